"""Test helpers for microct drivers: the contract suites every device implementation must pass."""
