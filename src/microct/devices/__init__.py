"""Device interfaces: XRaySource, Axis, Detector, and what they share."""

from microct.devices.axis import Axis, AxisCapabilities
from microct.devices.base import Device, Status
from microct.devices.detector import Detector, DetectorCapabilities, Frame, FrameFile, TriggerMode
from microct.devices.source import (
                                    SourceCapabilities,
                                    SourceState,
                                    SpotMode,
                                    XRaySource,
                                    check_operating_point,
                                    target_power_w,
)

__all__ = ["Axis", "AxisCapabilities", "Detector", "DetectorCapabilities", "Device", "Frame", "FrameFile",
           "SourceCapabilities", "SourceState", "SpotMode", "Status", "TriggerMode", "XRaySource",
           "check_operating_point", "target_power_w"]
