"""Cone-beam CT geometry and its conventions, written down once.

Lab frame (right-handed, millimetres): the rotation axis is the z axis
(pointing up); the focal spot sits at (0, −SOD, 0) and the beam runs along +y;
the detector plane is y = SDD − SOD.

- Detector columns (u) increase along +x and rows (v) increase along −z, as
  seen from the source looking at the detector; pixel (0, 0) is the top-left
  corner in that view. ``detector_offset_u_mm`` / ``detector_offset_v_mm``
  move the detector centre along +u / +v away from the central ray.
- ``centre_of_rotation_offset_mm`` moves the rotation axis along +x, measured
  at the axis (not on the detector: divide a detector-plane value by M).
- Angle zero: the sample frame coincides with the lab frame. With
  ``rotation_direction = +1`` a positive angle turns the sample
  counter-clockwise seen from above (+z); −1 is clockwise.
- Magnification M = SDD / SOD; voxel size at the axis = pixel pitch / M.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

CONVENTIONS = __doc__.split("\n\n", 1)[1].strip()


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Geometry:
    """Distances in mm; ``rotation_direction`` is +1 (counter-clockwise from above) or −1.

    Validated on construction (pydantic): ValidationError naming the field.
    """

    source_object_distance_mm: float = Field(gt=0, description="SOD: focal spot to rotation axis")
    source_detector_distance_mm: float = Field(gt=0, description="SDD: focal spot to detector plane; larger than SOD")
    detector_offset_u_mm: float = Field(default=0.0, description="detector centre's shift along +u (columns) from "
                                                                 "the central ray")
    detector_offset_v_mm: float = Field(default=0.0, description="detector centre's shift along +v (rows, "
                                                                 "downwards) from the central ray")
    centre_of_rotation_offset_mm: float = Field(default=0.0, description="rotation axis's shift along +x, "
                                                                         "measured at the axis (not on the detector)")
    rotation_direction: Literal[1, -1] = Field(default=1, description="+1: a positive angle turns the sample "
                                                                      "counter-clockwise seen from above; -1: "
                                                                      "clockwise")

    @model_validator(mode="after")
    def _object_between_source_and_detector(self):
        if self.source_object_distance_mm >= self.source_detector_distance_mm:
            raise ValueError(f"source_object_distance_mm ({self.source_object_distance_mm:g}) must be smaller "
                             f"than source_detector_distance_mm ({self.source_detector_distance_mm:g})")
        return self

    @property
    def magnification(self) -> float:
        """M = SDD / SOD."""
        return self.source_detector_distance_mm / self.source_object_distance_mm

    @property
    def object_detector_distance_mm(self) -> float:
        return self.source_detector_distance_mm - self.source_object_distance_mm

    def voxel_size_um(self, pixel_pitch_um: float) -> float:
        """Size of a detector pixel projected to the rotation axis (µm): pitch / M."""
        return pixel_pitch_um / self.magnification
