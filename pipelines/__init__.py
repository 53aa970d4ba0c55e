"""pipelines package (see docs/architecture.md)."""
