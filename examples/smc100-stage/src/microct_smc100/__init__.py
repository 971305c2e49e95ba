"""Newport SMC100CC / SMC100PP single-axis motion controllers for microct: an example plug-in package.

- ``codec``: the ASCII protocol, pure (commands and replies both ways, controller states, error tables);
- ``models``: the stage table (``StageModel``, ``STAGES``, ``stage_model``);
- ``driver``: ``SMC100Options`` and the ``SMC100Axis`` driver (entry point ``microct.drivers``: ``smc100``);
- ``simulator``: the wire simulator (entry point ``microct.simulators``: ``smc100``), which uses the codec
  and the models, never the driver.

Protocol facts: Newport, "SMC100CC & SMC100PP Single-Axis Motion Controller/Driver for DC or Stepper
Motor, User's Manual" (V3.0.x, EDH0206En2054, 06/23), summarised in PROTOCOL.md.
"""
