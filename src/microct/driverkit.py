"""The driver kit: everything a driver author needs, and nothing else.

A vendor driver (in microct's ``drivers/`` or in a plug-in package of its own) imports from here
only; its tests add ``microct.testing``. What is here, by job:

- device interfaces and what they share: ``XRaySource``, ``Axis``, ``Detector`` (public methods check
  arguments, ranges and state, then call the ``_do_*`` hooks a driver implements), ``Status``,
  ``DriverContext``, capabilities (``SourceCapabilities``, ``SpotMode``, ``AxisCapabilities`` with
  ``narrowed`` for a controller's soft limits, ``DetectorCapabilities``), ``Frame``, and ``Finding`` /
  ``FindingLevel`` for the commissioning report a driver extends in ``_do_check`` (``microct check``);
- the move engine (``MoveEngine``): supersede, stop, poll and complete moves in one place;
- options: ``DriverOptions`` (strict pydantic base), ``model_from_table`` (model tables with
  overrides), ``validation_message``;
- transports: ``SerialTransport`` / ``SerialSettings``, ``VisaTransport`` / ``VisaSettings``
  (``with_defaults`` for a device's defaults, ``Transport.transaction`` to hold a link across several
  exchanges), ``ChannelAccess`` for EPICS, and the frame readers of detectors that deliver frames as
  files in a folder or over a TCP stream;
- ``Clock`` and ``SimulatedClock``: every wait goes through the device's clock;
- the errors, all rooted in ``MicroCTError``; ``ErrorReply`` for a device's refusal.

Register the driver class in the entry-point group ``microct.drivers`` (see the README).
"""

from microct.clock import Clock, SimulatedClock
from microct.devices.axis import Axis, AxisCapabilities, AxisUnit, move_duration_s
from microct.devices.base import Device, DriverContext, Finding, FindingLevel, NoOptions, Status
from microct.devices.detector import Detector, DetectorCapabilities, Frame, FrameFile, TriggerMode
from microct.devices.motion import Move, MoveEngine
from microct.devices.source import (
                                    SourceCapabilities,
                                    SourceState,
                                    SpotMode,
                                    XRaySource,
                                    check_operating_point,
                                    target_power_w,
)
from microct.errors import (
                                    CommunicationError,
                                    ConfigurationError,
                                    DeviceFaultError,
                                    DeviceStateError,
                                    DeviceTimeoutError,
                                    ErrorReply,
                                    FrameLostError,
                                    InterlockError,
                                    LimitError,
                                    MicroCTError,
                                    ProtocolError,
                                    reworded,
)
from microct.options import DriverOptions, ModelTableOptions, deep_merged, model_from_table, validation_message
from microct.transport import LinkSettings, SerialSettings, SerialTransport, Transport, VisaSettings, VisaTransport
from microct.transport.epics import ChannelAccess, configure_environment
from microct.transport.frames import FolderReader, StreamReader

__all__ = [
    # devices
    "Axis", "AxisCapabilities", "AxisUnit", "Detector", "DetectorCapabilities", "Device", "DriverContext", "Finding",
    "FindingLevel", "Frame", "FrameFile", "NoOptions", "SourceCapabilities", "SourceState", "SpotMode", "Status",
    "TriggerMode", "XRaySource", "check_operating_point", "move_duration_s", "target_power_w",
    # motion
    "Move", "MoveEngine",
    # options and model tables
    "DriverOptions", "ModelTableOptions", "deep_merged", "model_from_table", "validation_message",
    # transports
    "ChannelAccess", "FolderReader", "LinkSettings", "SerialSettings", "SerialTransport", "StreamReader",
    "Transport", "VisaSettings", "VisaTransport", "configure_environment",
    # time
    "Clock", "SimulatedClock",
    # errors
    "CommunicationError", "ConfigurationError", "DeviceFaultError", "DeviceStateError", "DeviceTimeoutError",
    "ErrorReply", "FrameLostError", "InterlockError", "LimitError", "MicroCTError", "ProtocolError", "reworded",
]
