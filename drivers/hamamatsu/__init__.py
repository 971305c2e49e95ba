"""Hamamatsu microfocus X-ray sources L9181-02, L10711 and L12721 on RS-232.

``codec`` (pure: command bytes and replies for the driver, requests and replies for the wire
simulator), ``models`` (the per-model table ``MODELS``), ``driver`` (``HamamatsuOptions`` and
``HamamatsuSource``, registered as the driver ``hamamatsu``). The protocol is described in
docs/protocols/hamamatsu-microfocus.md.
"""
