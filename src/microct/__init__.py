"""microct: control the instruments of a microfocus X-ray CT scanner and acquire NXtomo scans."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("microct")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
