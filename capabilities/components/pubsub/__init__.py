"""Pub/sub backends; each module registers itself as "pubsub.<name>"."""
