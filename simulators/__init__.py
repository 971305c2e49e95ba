"""In-process simulators of the CT instruments (and, in later modules, wire-level ones)."""
