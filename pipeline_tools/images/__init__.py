"""images: see docs/architecture.md."""
