"""Real instrument drivers (serial, VISA, EPICS); each registers in the ``microct.drivers`` entry-point group."""
