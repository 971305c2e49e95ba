"""Transports move bytes to and from a device; they know nothing of any protocol."""

from microct.transport.base import LinkSettings, Transport
from microct.transport.links import LINKS, LinkRegistry, SharedLink
from microct.transport.serial import SerialSettings, SerialTransport
from microct.transport.visa import VisaSettings, VisaTransport

__all__ = ["LINKS", "LinkRegistry", "LinkSettings", "SerialSettings", "SerialTransport", "SharedLink", "Transport",
           "VisaSettings", "VisaTransport"]
