"""The areaDetector Channel Access vocabulary, shared by the driver and the simulated IOC
(``microct.simulators.epics_ad_ioc``), so that neither can drift from the other. Pure: no I/O.

Sources: the areaDetector documentation (ADCore: "ADDriver" for the ADBase PVs under ``cam1:``,
"NDPluginStdArrays" for ``image1:``, "NDPluginFile" and "NDFileHDF5" for ``HDF1:``), the
ADPerkinElmer documentation and its database ``PerkinElmer.template`` (the ``PE*`` PVs), and
docs/protocols/areadetector.md. PV names are relative to a plugin's prefix (``models``: ``cam1:``,
``image1:``, ``HDF1:``) under the detector's prefix (``13PE1:``).

Channel Access has no unsigned 16-bit type: 16-bit frames travel as DBR_SHORT (int16), and the
client reinterprets them as uint16 (``pixels_to_wire`` / ``pixels_from_wire``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microct.driverkit import FindingLevel

RBV = "_RBV"
"""The read-back twin of a set-point PV is its name plus this (``AcquireTime`` → ``AcquireTime_RBV``)."""


def setpoint(name: str) -> str:
    """The set-point PV of a read-back name (``ArrayCounter_RBV`` → ``ArrayCounter``)."""
    return name.removesuffix(RBV)


# -- PV names by the driver's key ------------------------------------------------------------------------
CAM = {"acquire": "Acquire", "acquire_rbv": "Acquire" + RBV, "acquire_time": "AcquireTime",
       "acquire_period": "AcquirePeriod", "num_images": "NumImages", "image_mode": "ImageMode",
       "trigger_mode": "TriggerMode", "bin_x": "BinX", "bin_y": "BinY", "data_type": "DataType" + RBV,
       "state": "DetectorState" + RBV, "counter": "ArrayCounter" + RBV, "array_callbacks": "ArrayCallbacks",
       "size_x": "ArraySizeX" + RBV, "size_y": "ArraySizeY" + RBV, "max_x": "MaxSizeX" + RBV,
       "max_y": "MaxSizeY" + RBV, "model": "Model" + RBV, "status_message": "StatusMessage" + RBV}
"""ADBase (the detector driver, ``cam1:``): ``Acquire`` is busy (its put-callback completes when the driver
and its plugins are done); ``ArrayCounter_RBV`` counts the frames made."""
IMAGE = {"image_enable": "EnableCallbacks", "image_counter": "ArrayCounter" + RBV, "unique_id": "UniqueId" + RBV,
         "dropped": "DroppedArrays" + RBV, "array_data": "ArrayData", "size0": "ArraySize0" + RBV,
         "size1": "ArraySize1" + RBV}
"""NDStdArrays (``image1:``): ``ArrayData`` holds the pixels, row-major, ``ArraySize0`` = width, ``ArraySize1``
= height; per frame the counters and ``UniqueId_RBV`` are posted before ``ArrayData``."""
HDF = {"hdf_enable": "EnableCallbacks", "file_path": "FilePath", "file_name": "FileName",
       "file_template": "FileTemplate", "auto_increment": "AutoIncrement", "write_mode": "FileWriteMode",
       "num_capture": "NumCapture", "capture": "Capture", "capture_rbv": "Capture" + RBV,
       "num_captured": "NumCaptured" + RBV, "full_file_name": "FullFileName" + RBV, "write_message": "WriteMessage"}
"""NDFileHDF5 (``HDF1:``): ``Capture`` is busy until ``NumCapture`` frames are written (0: until ``Capture`` = 0)."""
PERKINELMER = {"pe_use_offset": "PEUseOffset", "pe_use_gain": "PEUseGain", "pe_offset_constant": "PEOffsetConstant",
               "pe_num_offset_frames": "PENumOffsetFrames", "pe_num_gain_frames": "PENumGainFrames",
               "pe_use_pixel_correction": "PEUsePixelCorrection", "pe_acquire_offset": "PEAcquireOffset",
               "pe_acquire_gain": "PEAcquireGain"}
"""ADPerkinElmer's correction PVs, under ``cam1:``: ``PEAcquireOffset`` / ``PEAcquireGain`` are busy records
(their put completes when the offset / gain frames are taken)."""
MONITORED = ("acquire_rbv", "state", "counter", "image_counter", "unique_id", "dropped", "array_data",
             "capture_rbv", "num_captured")
"""Keys the driver follows by monitor (those of the PVs it connects)."""

# -- enum tables (strings by index) ----------------------------------------------------------------------
DETECTOR_STATES = ("Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting", "Error", "Waiting",
                   "Initializing", "Disconnected", "Aborted")
"""``DetectorState_RBV``."""
IDLE_STATES = ("Idle", "Aborted")
"""Detector states in which no acquisition runs."""
FAILED_STATES = ("Error", "Disconnected")
"""Detector states in which the driver cannot acquire (``StatusMessage_RBV`` says why)."""
DATA_TYPES = ("Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float32", "Float64")
"""``DataType`` / ``DataType_RBV``."""
DATA_TYPE = "UInt16"
"""The data type microct records."""
IMAGE_MODES = ("Single", "Multiple", "Continuous")
"""``ImageMode`` (ADPerkinElmer adds 3 Average)."""
IMAGE_MODE_MULTIPLE = IMAGE_MODES.index("Multiple")
TRIGGER_MODES = ("Internal", "External")
"""``TriggerMode`` of ADBase (drivers add their own: ADPerkinElmer 2 Free Running, 3 Soft Trigger)."""
TRIGGER_INTERNAL = TRIGGER_MODES.index("Internal")
"""``Acquire`` starts the exposures."""
FILE_WRITE_MODES = ("Single", "Capture", "Stream")
"""``FileWriteMode``."""
FILE_WRITE_STREAM = FILE_WRITE_MODES.index("Stream")
DONE_ACQUIRE = ("Done", "Acquire")
"""``Acquire`` / ``Acquire_RBV`` (and ADPerkinElmer's busy ``PEAcquireOffset`` / ``PEAcquireGain``)."""
DONE_CAPTURE = ("Done", "Capture")
"""``Capture`` / ``Capture_RBV``."""
DISABLE_ENABLE = ("Disable", "Enable")
"""``EnableCallbacks``, ``ArrayCallbacks``, ADPerkinElmer's ``PEUse*``."""
NO_YES = ("No", "Yes")
"""``AutoIncrement``, ``BlockingCallbacks``, ``FilePathExists_RBV``."""
OFF, ON = 0, 1
"""The index of the first / second string of a two-state enum (Done / Acquire, Disable / Enable, No / Yes)."""


def state_level(state: str) -> FindingLevel:
    """How a commissioning report judges ``DetectorState_RBV``: idle "ok", Error or Disconnected "error",
    any other (an acquisition, readout or correction under way: another client?) "warning"."""
    if state in IDLE_STATES:
        return "ok"
    return "error" if state in FAILED_STATES else "warning"


def is_on(value: Any, strings: tuple[str, str]) -> bool:
    """Whether a two-state enum read as its index or its string (``strings``) is in its second state
    (Acquire, Capture, Enable, Yes)."""
    return value in (ON, strings[ON])


# -- HDF5 files ------------------------------------------------------------------------------------------
HDF_DATASET = "/entry/data/data"
"""Where NDFileHDF5's default layout puts the frames (n × rows × columns)."""
FILE_TEMPLATE = "%s%s_%6.6d.h5"
"""FilePath, FileName, FileNumber → the file (NDFileHDF5 formats them with C printf)."""


def file_name(template: str, path: str, name: str, number: int) -> str:
    """The file NDFileHDF5 writes: ``template`` (C printf) filled with FilePath, FileName, FileNumber."""
    return template % (path, name, number)


# -- pixels on the wire ----------------------------------------------------------------------------------
BYTES_PER_PIXEL = 2
ARRAY_HEADROOM_BYTES = 16384
"""Added to a frame's size for ``EPICS_CA_MAX_ARRAY_BYTES`` (the Channel Access message header and more)."""


def max_array_bytes(rows: int, columns: int) -> int:
    """``EPICS_CA_MAX_ARRAY_BYTES`` a frame of ``rows`` × ``columns`` 16-bit pixels needs, on both ends."""
    return rows * columns * BYTES_PER_PIXEL + ARRAY_HEADROOM_BYTES


def pixels_to_wire(frame: np.ndarray) -> np.ndarray:
    """A uint16 frame as ``ArrayData`` carries it: flattened row-major, reinterpreted as int16."""
    return frame.reshape(-1).view(np.int16)


def pixels_from_wire(data: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """``ArrayData`` (int16 on the wire) back as a uint16 frame of ``rows`` × ``columns``."""
    return data.view(np.uint16).reshape(rows, columns)
