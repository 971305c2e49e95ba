"""PI stage models: what the driver and the simulator need to know of a stage product.

Every figure carries its source (most are examples: see the note on STAGES). GCS works in physical
units, deg or mm (docs/protocols/pi-gcs.md, "Commands").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from microct.driverkit import AxisUnit, model_from_table


class StageModel(BaseModel):
    """A stage product as the driver and the simulator need it. Positions in ``unit`` as the controller
    reports them (GCS works in physical units: deg or mm, sheet "Commands")."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit: AxisUnit = Field(description="the unit the controller reports positions in (GCS works in physical "
                                       "units): 'deg' for a rotation stage, 'mm' for a linear one")
    max_velocity: float = Field(gt=0, description="unit/s")
    low_limit: float = Field(description="soft limit (unit)")
    high_limit: float = Field(description="soft limit (unit)")
    acceleration: float | None = Field(default=None, gt=0, description="unit/s²; None if not known")
    reference_position: float = Field(default=0.0, description="position after the reference move FRF (unit)")

    @model_validator(mode="after")
    def _limits_ordered(self):
        if self.low_limit >= self.high_limit:
            raise ValueError(f"soft limits ({self.low_limit}, {self.high_limit}): low must be < high")
        if not self.low_limit <= self.reference_position <= self.high_limit:
            raise ValueError(f"reference_position {self.reference_position} lies outside the soft limits "
                             f"({self.low_limit}, {self.high_limit})")
        return self


STAGES: dict[str, StageModel] = {
    # EXAMPLE FIGURES: none of these was read from a PI datasheet here; check yours and use `overrides`.
    # U-651 (PILine rotation stage, unlimited rotation): 720 deg/s recalled from PI's product page, not
    # checked; soft limits: a configuration choice, one turn each way; reference position 0 deg: an example.
    "U-651": StageModel(unit="deg", max_velocity=720.0, low_limit=-360.0, high_limit=360.0),
    # L-509.40 (linear stage): 102 mm travel, the longer of the two L-509 stages (52 and 102 mm) in the
    # mesoSPIM V5 hardware documentation; 20 mm/s and the reference at the low end: examples.
    "L-509.40": StageModel(unit="mm", max_velocity=20.0, low_limit=0.0, high_limit=102.0),
}
# Acceleration: not known for either (a move's shortest time is then estimated at full speed).


def stage_model(name: str, overrides: Mapping[str, Any] | None = None) -> StageModel:
    """The model ``name`` from STAGES with ``overrides`` (StageModel fields) applied; ConfigurationError
    for an unknown name or a bad override."""
    return model_from_table(STAGES, "stage", name, overrides)
