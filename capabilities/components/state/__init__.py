"""state backends (one module per backend; registered on import)."""
