"""The Spellman generator models: family (command set), full scale (kV, mA), read-back over-range, spot
modes (``SpotMode``, ``code`` = the filament: "small" or "large", as ``32,0`` / ``32,1`` selects it; None
on the single-filament uX), baud rate, and optional tighter ranges for the tube. Every figure's source is
given below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from microct.driverkit import SourceCapabilities, SpotMode, model_from_table
from microct.drivers.spellman.codec import COMMAND_SETS, CommandSet

FILAMENTS = ("small", "large")
"""The spot-mode codes of a family with a filament select: ``32,0`` selects the small, ``32,1`` the large
filament (docs/protocols/spellman-xrv.md, "Commands")."""


class GeneratorModel(BaseModel):
    """A generator model: family, full scale (kV, mA), read-back over-range, spot modes by name, baud;
    optional tighter kV and µA ranges for the tube (default: 0 to full scale)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="the model's name (its table key), shown in describe() and in errors")
    family: Literal["XRV", "uX"] = Field(description="command set: command numbers, status and monitor layouts, "
                                                    "and whether filament select, faults and reset exist (XRV only)")
    full_scale_kv: float = Field(gt=0, description="the voltage at 4095 DAC counts, which scales every kV sent and "
                                                   "read; the XRV's '28' reply is checked against it at connect")
    full_scale_ma: float = Field(gt=0, description="the current at 4095 DAC counts (mA; µA = 1000 × mA), which "
                                                   "scales every current sent and read; checked as full_scale_kv")
    readback_over_range: float = Field(ge=1.0, description="monitor full count / set-point full scale")
    spot_modes: dict[str, SpotMode] = Field(description="spot modes by name; code: the filament, 'small' or "
                                            "'large' (selected by 32,0 / 32,1), each serving one mode; the uX has "
                                            "one filament: exactly one mode, code unset. Power limits and spot "
                                            "sizes are the tube's (example figures in the table)")
    baudrate: int = Field(default=9600, gt=0, description="line speed (baud) of a serial (ASRL) resource unless "
                                                         "visa.baudrate is set; 9600: the XRV default (notes)")
    voltage_range_kv: tuple[float, float] | None = Field(default=None, description="allowed kV set-points, low to "
                                                         "high, where the tube allows less than the generator; "
                                                         "unset: 0 to full_scale_kv")
    current_range_ua: tuple[float, float] | None = Field(default=None, description="allowed µA set-points, low to "
                                                         "high, where the tube allows less than the generator; "
                                                         "unset: 0 to 1000 × full_scale_ma")

    @property
    def full_scale_ua(self) -> float:
        return self.full_scale_ma * 1000.0

    @property
    def commands(self) -> CommandSet:
        return COMMAND_SETS[self.family]

    def spot_mode_of(self, large: bool) -> str | None:
        """The name of the spot mode on the large (or small) filament; None if the table has none."""
        code = FILAMENTS[large]
        return next((name for name, mode in self.spot_modes.items() if mode.code == code), None)

    @model_validator(mode="after")
    def _consistent(self):
        caps = self.capabilities()  # ranges ordered, at least one mode
        for label, (_, high), full, unit in (("voltage_range_kv", caps.voltage_range_kv, self.full_scale_kv, "kV"),
                                             ("current_range_ua", caps.current_range_ua, self.full_scale_ua, "µA")):
            if high > full:
                raise ValueError(f"{label}: {high:g} {unit} is above the full scale {full:g} {unit}")
        codes = {name: mode.code for name, mode in self.spot_modes.items()}
        if self.commands.filament_select is None:
            if len(self.spot_modes) != 1:
                raise ValueError(f"spot_modes: the {self.family} family has one filament, so exactly one spot mode; "
                                 f"got {sorted(self.spot_modes)}")
            if any(code is not None for code in codes.values()):
                raise ValueError(f"spot_modes: the {self.family} family selects no filament, so the code is None; "
                                 f"got {codes}")
            return self
        if any(code not in FILAMENTS for code in codes.values()):
            raise ValueError(f"spot_modes: each code names the filament, 'small' or 'large'; got {codes}")
        if len(set(codes.values())) != len(codes):
            raise ValueError(f"spot_modes: each filament (large, small) serves one mode, got {sorted(self.spot_modes)}")
        return self

    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(self.voltage_range_kv or (0.0, self.full_scale_kv),
                                  self.current_range_ua or (0.0, self.full_scale_ua), dict(self.spot_modes))


# Where each figure comes from ("notes": the repository's protocol notes, docs/protocols/spellman-xrv.md;
# "PyMeasure": the public PyMeasure XRV driver's tests, test_spellmanXRV.py; "uX scripts": public lab
# scripts for uX generators, MollerSBU/xray_scan_control):
# - families, 9600 baud: notes. XRV read-back over-range 1.2: notes and PyMeasure; the uX has none
#   documented (1.0 assumed).
# - XRV160 full scale 160 kV / 30 mA: the "28" reply of PyMeasure's XRV tests ("28,160,30,0,").
# - XRV filaments small and large ("32,1" selects the large one): notes, "Commands".
# - uX50 50 kV / 2 mA: uX scripts README ("50 kV", "1 mA (4095 = 2 mA)"); another of their scripts reads
#   4095 as 65 kV and 5 mA ("manual is wrong"): check the scaling of each unit (notes).
# EXAMPLE FIGURES, to check against the generator's and tube's documents before use: every power limit
# (a 160 kV industrial tube with 0.4 / 1.0 mm focal spots, 800 W / 1800 W, on the XRV160; 50 W on the
# uX50) and every spot size (the generator has none: the tube's).
MODELS: dict[str, GeneratorModel] = {
    "XRV160": GeneratorModel(
        name="XRV160", family="XRV", full_scale_kv=160, full_scale_ma=30, readback_over_range=1.2,
        spot_modes={"small": SpotMode(code="small", power_limit_w=800, spot_size_um=400),
                    "large": SpotMode(code="large", power_limit_w=1800, spot_size_um=1000)}),
    "uX50": GeneratorModel(
        name="uX50", family="uX", full_scale_kv=50, full_scale_ma=2, readback_over_range=1.0,
        spot_modes={"fixed": SpotMode(code=None, power_limit_w=50, spot_size_um=50)}),
}


def generator_model(model: str, overrides: Mapping[str, Any] | None = None) -> GeneratorModel:
    """The table entry ``model`` with ``overrides`` replacing its fields one by one (spot modes by name,
    field by field). ConfigurationError naming the key and value for an unknown model or a bad field."""
    return model_from_table(MODELS, "model", model, overrides)
