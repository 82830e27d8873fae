"""local: see docs/architecture.md."""
