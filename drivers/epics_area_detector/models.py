"""Defaults of the areaDetector driver that configuration may override, each with its source: the plugin
prefixes under the detector's prefix, and the PerkinElmer (ADPerkinElmer) correction settings put at connect.
"""

from __future__ import annotations

from pydantic import Field

from microct.driverkit import DriverOptions

CAM_PREFIX = "cam1:"
"""The detector driver (ADBase) under the detector prefix: ``R=cam1:`` in the example IOCs' ``st.cmd``
(ADPerkinElmer's among them)."""
IMAGE_PREFIX = "image1:"
"""The NDStdArrays plugin: ``R=image1:`` in the same ``st.cmd`` files (loaded with ``TYPE=Int16,FTVL=SHORT``)."""
HDF_PREFIX = "HDF1:"
"""The NDFileHDF5 plugin: ``R=HDF1:`` in ADCore's ``iocBoot/EXAMPLE_commonPlugins.cmd``."""


class PerkinElmerOptions(DriverOptions):
    """ADPerkinElmer's correction settings, put at every connect (``[detector.options.perkinelmer]``;
    docs/protocols/areadetector.md, "Vendor additions"; the ADPerkinElmer documentation).

    Defaults: the ``PEUse*`` switches off (Disable) and ``PEOffsetConstant`` 0, as ADPerkinElmer's
    database ``PerkinElmer.template`` leaves them (bo records Disable / Enable, a longout without a
    value). The template gives ``PENumOffsetFrames`` / ``PENumGainFrames`` no value (display range 1 to
    500): 10 frames each is microct's own default. The simulated IOC starts with these values too.
    """

    use_offset: bool = Field(default=False, description="PEUseOffset: the IOC subtracts its offset (dark) image "
                                                       "from every frame")
    use_gain: bool = Field(default=False, description="PEUseGain: the IOC applies its gain (flat-field) correction "
                                                     "to every frame")
    use_pixel_correction: bool = Field(default=False, description="PEUsePixelCorrection: the IOC corrects the bad "
                                                                 "pixels of its pixel-correction file")
    offset_constant: int = Field(default=0, ge=0, description="counts added after the offset correction")
    num_offset_frames: int = Field(default=10, ge=1, description="PENumOffsetFrames: dark frames acquire_offset() "
                                   "averages into the offset image (10: microct's default; the template sets none)")
    num_gain_frames: int = Field(default=10, ge=1, description="PENumGainFrames: flat frames acquire_gain() averages "
                                 "into the gain image (10: microct's default; the template sets none)")
