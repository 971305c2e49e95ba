"""Zaber stages over the Zaber ASCII protocol.

- ``codec``: the protocol, pure (commands and replies both ways, checksums, warning flags, unit conversion);
- ``models``: the stage table (``StageModel``, ``STAGES``, ``stage_model``);
- ``driver``: ``ZaberOptions`` and the ``ZaberAxis`` driver.

The wire simulator (``microct.simulators.zaber``) uses the codec and the models, never the driver.
Protocol facts: docs/protocols/zaber-ascii.md and Zaber's ASCII protocol manual.
"""
