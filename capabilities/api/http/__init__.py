"""Dapr HTTP API (aiohttp). build_app(runtime) in app.py assembles every route and middleware."""
