"""Embedded demo: small aiohttp services (productpage, reviews v1/v2, ratings) and their mesh config.

`python -m xds.demo APP --port P [--version v1] [--proxy 127.0.0.1:OUTBOUND]` runs one app;
`xds.demo.config.demo_config(layout)` renders the Istio YAML for a chosen port layout.
"""

from xds.demo.apps import APPS, make_app
from xds.demo.config import DemoLayout, DemoWorkload, default_layout, demo_config

__all__ = ["APPS", "DemoLayout", "DemoWorkload", "default_layout", "demo_config", "make_app"]
