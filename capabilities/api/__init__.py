"""Dapr-compatible API surfaces (HTTP; gRPC later). The only place mapping errors to status codes."""
