"""attacks package (see docs/architecture.md)."""
