"""Building blocks: one contract (Protocols + feature flags) and one service per block."""
