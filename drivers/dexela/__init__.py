"""Varex (Dexela) CMOS flat panels: registers over a serial line, frames from a frame-grabber channel.

``codec`` (pure: the register protocol both ways, and the frame channel's requests, headers and file
names), ``models`` (the panel figures known publicly), ``grabber`` (the frame channel's host end, a
folder or a TCP stream, on the kit's ``FolderReader`` and ``StreamReader``), ``driver``
(``DexelaOptions`` and ``DexelaDetector``, registered as the driver ``dexela``). The register protocol
is derived from open-source drivers, not a vendor document (docs/protocols/dexela-serial.md); the
frame channel is this project's own, described in ``codec``.
"""
