"""A flat panel behind an EPICS areaDetector IOC, over Channel Access.

``codec`` (pure: the PV names of ADBase, NDStdArrays, NDFileHDF5 and ADPerkinElmer, their enum
tables, the HDF5 file layout and the int16 → uint16 pixel conversion, shared with the simulated IOC
``microct.simulators.epics_ad_ioc``), ``models`` (defaults configuration may override: the plugin
prefixes, the PerkinElmer correction settings), ``driver`` (``AreaDetectorOptions`` and
``AreaDetector``, registered as the driver ``epics-ad``). The PVs are described in
docs/protocols/areadetector.md.
"""
