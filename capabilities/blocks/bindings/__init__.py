"""Bindings building block: input/output contracts, invoke service, error mapping."""
