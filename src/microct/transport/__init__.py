"""Transports move bytes to and from a device; they know nothing of any protocol."""

from microct.transport.base import Transport
from microct.transport.serial import SerialSettings, SerialTransport
from microct.transport.visa import VisaSettings, VisaTransport

__all__ = ["SerialSettings", "SerialTransport", "Transport", "VisaSettings", "VisaTransport"]
