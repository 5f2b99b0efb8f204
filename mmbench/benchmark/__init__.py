"""The harness: everything that is the same for every method."""
