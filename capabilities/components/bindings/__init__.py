"""Binding backends; each module registers itself as "bindings.<name>"."""
