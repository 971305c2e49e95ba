"""Zaber stage models: what the driver and the simulator need to know of a stage product.

Every figure carries its source. Sources: docs/protocols/zaber-ascii.md (the repository's protocol fact
sheet, cited as "sheet") and public host code, as noted per figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from microct.driverkit import AxisUnit, model_from_table


class StageModel(BaseModel):
    """A stage product: everything needed to convert native units and to know its limits.

    Positions travel as microsteps (sheet, "Units and scaling"): position = steps × ``microstep_size`` (unit).
    Speeds travel as data units: data = (unit/s) / ``microstep_size`` × ``speed_factor``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit: AxisUnit = Field(description="the stage's unit, 'deg' (rotary) or 'mm' (linear): a position is "
                                       "microsteps × microstep_size in it")
    microstep_size: float = Field(gt=0, description="unit per microstep")
    speed_factor: float = Field(default=1.6384, gt=0, description="speed data units per microstep/s")
    max_speed: float = Field(gt=0, description="unit/s")
    low_limit: float = Field(description="soft limit (unit)")
    high_limit: float = Field(description="soft limit (unit)")
    acceleration: float | None = Field(default=None, gt=0, description="unit/s²; None if not known")
    baudrate: int = Field(default=115200, gt=0, description="line speed (baud) unless serial.baudrate is set; "
                                                           "115200: current firmware's default (sheet, 'Framing'; "
                                                           "9600 on old units)")

    @model_validator(mode="after")
    def _limits_ordered(self):
        if self.low_limit >= self.high_limit:
            raise ValueError(f"soft limits ({self.low_limit}, {self.high_limit}): low must be < high")
        return self


STAGES: dict[str, StageModel] = {
    # Figures not read from Zaber's own product pages here; confirm them there before relying on them.
    # Microstep 0.000234375 deg: the RSW60A family as configured in public host code (T-RSW60A).
    # 115 deg/s: the X-RSW60A-E03 datasheet maximum as quoted in public host code.
    # Soft limits: one turn each way, a configuration choice (the stage rotates continuously).
    "X-RSW60A": StageModel(unit="deg", microstep_size=0.000234375, max_speed=115.0,
                           low_limit=-360.0, high_limit=360.0),
    # Microstep 0.047625 um: public host code for X-LSM stages (0.6096 mm lead / 12800 microsteps).
    # Travel 101.6 mm and 26 mm/s: the X-LSM100A-E03 specifications as quoted in a public design note.
    "X-LSM100A": StageModel(unit="mm", microstep_size=0.000047625, max_speed=26.0,
                            low_limit=0.0, high_limit=101.6),
}
# Baud 115200 for both: the current firmware default (sheet, "Framing"). Acceleration: not known.


def stage_model(name: str, overrides: Mapping[str, Any] | None = None) -> StageModel:
    """The model ``name`` from STAGES with ``overrides`` (StageModel fields) applied; ConfigurationError
    for an unknown name or a bad override."""
    return model_from_table(STAGES, "stage", name, overrides)
