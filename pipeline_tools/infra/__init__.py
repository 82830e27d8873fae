"""infra: see docs/architecture.md."""
