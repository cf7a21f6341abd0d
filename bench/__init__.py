"""chatd's benchmark harness: a load generator, its scenarios and a runner (see README.md)."""
