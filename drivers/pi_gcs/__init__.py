"""PI (Physik Instrumente) stage controllers over the GCS 2 command set.

- ``codec``: the protocol, pure (commands and replies both ways, the end-of-reply rule, error codes);
- ``models``: the stage table (``StageModel``, ``STAGES``, ``stage_model``);
- ``driver``: ``PIOptions`` and the ``PIAxis`` driver.

The wire simulator (``microct.simulators.pi_gcs``) uses the codec and the models, never the driver.
Protocol facts: docs/protocols/pi-gcs.md and PI's public Python client PIPython.
"""
