"""Shipped scan configurations (TOML); ``sim.toml`` is the default of ``microct scan``."""
