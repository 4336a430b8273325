"""Pub/sub building block: contract, CloudEvents envelope, publish service, error mapping."""
