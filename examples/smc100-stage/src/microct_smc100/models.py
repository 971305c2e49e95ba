"""Stage models: what the driver and the simulator need to know of a stage behind an SMC100.

The SMC100 speaks in the stage's own units (degrees for a rotation stage, millimetres for a linear
one: manual, "SU — Set/Get encoder increment value": SU defines the system of units), so no
conversion is needed; a model gives the unit, the speeds and the travel the driver checks against
before the controller is asked.

Figures marked "example" could not be checked against Newport's datasheets here: they are plausible
values for the product, to be replaced by the datasheet's before the table is relied on. The
controller's own limits are read at connect (SL?, SR?) and narrow the model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from microct.driverkit import AxisUnit, model_from_table


class StageModel(BaseModel):
    """A stage product: its unit, speed, acceleration, travel and where its home search ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit: AxisUnit = Field(description="the unit the controller works in for this stage (its SU setting): 'deg' "
                                       "for a rotation stage, 'mm' for a linear one; nothing is converted")
    max_velocity: float = Field(gt=0, description="unit/s")
    acceleration: float = Field(gt=0, description="unit/s²")
    low_limit: float = Field(description="soft limit (unit)")
    high_limit: float = Field(description="soft limit (unit)")
    home_position: float = Field(default=0.0, description="position where the home search OR ends (unit)")
    identifier: str = Field(min_length=1, max_length=31, description="what ID? answers (the Newport product name)")

    @model_validator(mode="after")
    def _limits_ordered(self):
        if self.low_limit >= self.high_limit:
            raise ValueError(f"soft limits ({self.low_limit}, {self.high_limit}): low must be < high")
        if not self.low_limit <= self.home_position <= self.high_limit:
            raise ValueError(f"home_position={self.home_position} is outside the soft limits")
        return self


STAGES: dict[str, StageModel] = {
    # URS75BCC, a DC rotation stage: identifier as the manual's ID? example names its larger sibling
    # ("Controller returns URS100CC"). 20 deg/s and 80 deg/s²: example. Soft limits: a configuration
    # choice, one turn either way (a CT scan turns up to 360 deg from 0; the stage turns without end).
    # Home at 0 deg: where a home search on the mechanical zero and index ends (manual, HT: type 0).
    "URS75BCC": StageModel(unit="deg", max_velocity=20.0, acceleration=80.0, low_limit=-360.0, high_limit=360.0,
                           identifier="URS75BCC"),
    # ILS100CC, a DC linear stage: 100 mm travel (the product name). 100 mm/s and 400 mm/s²: example.
    # Travel centred on the home position: example.
    "ILS100CC": StageModel(unit="mm", max_velocity=100.0, acceleration=400.0, low_limit=-50.0, high_limit=50.0,
                           identifier="ILS100CC"),
}


def stage_model(name: str, overrides: Mapping[str, Any] | None = None) -> StageModel:
    """The model ``name`` from STAGES with ``overrides`` (StageModel fields) applied; ConfigurationError
    for an unknown name or a bad override."""
    return model_from_table(STAGES, "stage", name, overrides)
