"""Secret stores building block."""
