"""Spellman X-ray generators (XRV and uX families) over VISA: TCPIP SOCKET, or ASRL with the checksum.

``codec`` (pure: frames, replies and requests, DAC-count scaling, the per-family command table
``COMMAND_SETS``), ``models`` (the generator table ``MODELS``), ``driver`` (``SpellmanOptions`` and
``SpellmanSource``, registered as the driver ``spellman``). The protocol is described in
docs/protocols/spellman-xrv.md.
"""
