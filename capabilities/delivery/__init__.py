"""Delivery of pub/sub messages and input-binding events to the app, per the protocol it speaks:
`http/` (POST to the app's routes, as daprd does) and `grpc/` (the app's AppCallback service). Shared by both:
what an app subscribed to (subscriptions.py), the CEL routing rules (routing.py) and the delivery verdicts and
retry (postman.py)."""
