"""Configuration building block: get items, subscribe to changes (delivered to the app)."""
