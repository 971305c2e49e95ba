"""An X-ray source behind an EPICS soft IOC, over Channel Access.

``codec`` (pure: the enum tables and spot-mode values the driver and the simulated IOC
``microct.simulators.epics_ioc`` share), ``models`` (the defaults configuration may override: PV
names after the prefix, the ``State_RBV`` table), ``driver`` (``EpicsSourceOptions`` and
``EpicsSource``, registered as the driver ``epics-source``). The PV scheme is described in
docs/protocols/epics-xray-source.md.
"""
