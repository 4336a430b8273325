"""Sequencer building block (Mecha extension after Layotto's GetNextId): strictly increasing ids per key."""
