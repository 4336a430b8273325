"""Distributed lock building block (alpha1): try-lock with expiry, unlock with status."""
