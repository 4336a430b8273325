"""A gRPC app written with the official `dapr.ext.grpc` App (AppCallback), for the SDK e2e tests.

python dapr_grpc_app.py --port P --topic T --binding B --out FILE
Every pub/sub event and input-binding event is appended to FILE as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import threading

from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, BindingRequest, SubscriptionMessage

_lock = threading.Lock()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--binding", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    app = App()

    def record(row: dict) -> None:
        with _lock, open(args.out, "a") as out:
            out.write(json.dumps(row) + "\n")

    @app.subscribe(pubsub_name="events", topic=args.topic)
    def on_event(event: SubscriptionMessage) -> TopicEventResponse:
        record({"kind": "event", "topic": event.topic(), "data": event.data()})
        return TopicEventResponse("success")

    @app.binding(args.binding)
    def on_binding(request: BindingRequest) -> None:
        record({"kind": "binding", "name": args.binding, "metadata": dict(request.binding_metadata)})

    app.run(args.port, "127.0.0.1")


if __name__ == "__main__":
    main()
