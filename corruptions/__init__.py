"""corruptions package (see docs/architecture.md)."""
