"""DECTRIS PILATUS detectors run by camserver, over a VISA TCPIP SOCKET resource.

``codec`` (pure: commands and replies both ways, series file names, the TIFF layout and pixel values
of the image files), ``models`` (the PILATUS sizes, pixel pitch and module gaps), ``driver``
(``CamserverOptions`` and ``CamserverDetector``, registered as the driver ``camserver``). Images never
cross the socket: camserver writes one TIFF file per image into its ImgPath, which the driver reads
with the kit's ``FolderReader``. The protocol is described in the PILATUS3 user manual (socket
interface, command list, reply codes) and in docs/protocols/dectris-camserver.md.
"""
