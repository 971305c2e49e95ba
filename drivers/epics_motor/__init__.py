"""A stage axis behind an EPICS motor record, over Channel Access.

``codec`` (pure: the record's field names, the ``MSTA`` bit layout and the soft-limit rule, shared
with the simulated IOC ``microct.simulators.epics_motor_ioc``), ``driver`` (``EpicsMotorOptions`` and
``EpicsMotorAxis``, registered as the driver ``epics-motor``). No ``models`` module: the record
reports what a model table would hold (units, limits, speeds), and the few figures it cannot report
are the axis options. The record is described in docs/protocols/epics-motor-record.md.
"""
