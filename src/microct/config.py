"""Scan configuration: TOML → validated pydantic models, before anything connects.

One table per instrument (``[source]``, ``[rotation]``, ``[detector]``, optional
``[sample_out]``) naming its ``driver``, its ``connection`` and its ``options``
(checked against the driver's own ``Options`` model when the instruments are
built; an axis table also says when the axis is homed, ``home``); a ``[geometry]``
table; a ``[scan]`` table; an optional ``[simulation]`` table. Every error becomes
one ConfigurationError naming the key (``scan.voltage_kv``), the value and what is
allowed.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from microct.errors import ConfigurationError
from microct.faults import Fault
from microct.geometry import Geometry
from microct.options import validation_message
from microct.policies import RecoveryPolicy

DEFAULT_CONFIG = "sim.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstrumentConfig(_Strict):
    driver: str = Field(min_length=1, description="registered driver name (see `microct drivers`)")
    connection: str | None = Field(default=None, description="serial port or URL, VISA resource, or PV prefix")
    options: dict[str, Any] = Field(default_factory=dict, description="driver options, checked against the "
                                    "driver's own Options model when the instruments are built (its JSON schema: "
                                    "`microct config schema --driver NAME`)")


HomeSetting = Literal["never", "if-needed", "always"]
"""When a scan homes an axis (``microct.homing``)."""


class AxisConfig(InstrumentConfig):
    """An axis table (``[rotation]``, ``[sample_out]``): the instrument, and when it is homed."""

    home: HomeSetting = Field(default="if-needed", description="when a scan homes the axis, before the beam is "
                              "on: \"if-needed\" when the device reports no position reference (a device that "
                              "cannot tell is not homed), \"always\" at every scan, \"never\" (positions are then "
                              "relative to wherever the stage was at power-up); `microct home` homes every axis "
                              "but the \"never\" ones")
    home_timeout_s: float = Field(default=120.0, gt=0, description="longest homing move (s): the axis is stopped "
                                                                    "and the scan or `microct home` fails after "
                                                                    "it")


class ReferenceCheck(_Strict):
    """Darks and flats compared as soon as both are taken, before any projection (``microct.sequencer``)."""

    enabled: bool = Field(default=True, description="false: no check (e.g. a detector simulator served on its "
                                                    "own, whose darks are lit)")
    min_flat_signal_sigma: float = Field(
        default=10.0, gt=0, description="the flats' mean must exceed the darks' mean by this many standard "
                                        "deviations of a dark frame's pixels (and by at least 1 count): less means "
                                        "the beam did not reach the detector (tube not on, shutter closed)")
    max_dark_fraction: float = Field(
        default=0.5, gt=0, le=1, description="the darks' mean must stay below this fraction of the detector's "
                                             "saturation value: more means the darks are lit (the beam did not "
                                             "switch off, light leaks in)")


class ScanSettings(_Strict):
    title: str = Field(default="microct scan", description="the scan's title (NXtomo entry title and sample name)")
    output: str = Field(default="microct-scan.nxs", description="the NXtomo file written (`microct scan -o` "
                                                                "overrides it)")
    n_projections: int = Field(ge=1, le=1_000_000, description="projections, evenly spaced over range_deg")
    start_deg: float = Field(default=0.0, description="angle of the first projection")
    range_deg: float = Field(default=360.0, gt=0, le=3600, description="angular range the projections span")
    include_end_angle: bool = Field(default=False, description="true: last angle = start + range")
    voltage_kv: float = Field(gt=0, description="tube voltage, checked against the source's range")
    current_ua: float = Field(ge=0, description="tube current, checked against the source's range and the spot "
                                                "mode's power limit")
    spot_mode: str = Field(description="a focal-spot mode the source declares (e.g. \"small\")")
    exposure_s: float = Field(gt=0, description="exposure of each frame, checked against the detector's range")
    binning: int = Field(default=1, ge=1, description="detector binning (one of the detector's binnings)")
    frames_averaged: int = Field(default=1, ge=1, le=1000, description="frames averaged into each stored "
                                                                       "frame")
    frames_skipped: int = Field(default=0, ge=0, le=1000, description="frames discarded after each move")
    settle_s: float = Field(default=0.0, ge=0, description="wait after each move")
    n_darks: int = Field(default=10, ge=0, description="dark frames (beam off) at each reference point")
    n_flats: int = Field(default=10, ge=0, description="flat frames (beam on, sample out) at each reference "
                                                       "point")
    references_at: Literal["start", "end", "both"] = Field(default="start", description="when darks and flats "
                                                                                        "are taken")
    sample_out_position_mm: float | None = Field(default=None, description="sample-out axis position for flats")
    sample_diameter_mm: float | None = Field(
        default=None, gt=0, description="the sample's largest width across the rotation axis (mm); "
                                        "`microct plan` keeps it in the field of view")
    stable_tolerance: float = Field(default=0.01, gt=0, lt=1, description="relative kV/µA tolerance")
    stable_hold_s: float = Field(default=2.0, ge=0, description="read-backs within tolerance this long")
    stable_timeout_s: float = Field(default=300.0, gt=0, description="longest wait for stable kV/µA "
                                                                     "read-backs")
    warmup_timeout_s: float = Field(default=3600.0, gt=0, description="longest wait for the tube's warm-up")
    move_timeout_s: float = Field(default=120.0, gt=0, description="longest wait for one stage move")
    return_to_start: bool = Field(default=True, description="move the rotation back to start_deg after the "
                                                           "scan")
    flush_interval_s: float = Field(default=1.0, ge=0, description="flush the file at least this often")
    sync_to_disk: bool = Field(default=True, description="at each flush, put the frames on the disk (fsync) "
                                                         "before the journal names them: power-cut safe")
    recovery: RecoveryPolicy = Field(default_factory=RecoveryPolicy, description="[scan.recovery]: what a frame "
                                                                                 "that fails gets (microct.policies)")
    reference_check: ReferenceCheck = Field(default_factory=ReferenceCheck,
                                            description="[scan.reference_check]: darks and flats compared before "
                                                        "the projections")
    resume_references_after_s: float = Field(
        default=0.0, ge=0, description="a resumed scan takes a fresh set of darks and flats before its next "
                                       "projection when the interrupted run's last frame is older than this (s); 0: "
                                       "at every resume. Both sets stay in the file, in the order taken")

    def angles_deg(self) -> list[float]:
        """Nominal projection angles (degrees)."""
        n = self.n_projections
        step = self.range_deg / (n - 1 if self.include_end_angle and n > 1 else n)
        return [self.start_deg + i * step for i in range(n)]


class SimulationSettings(_Strict):
    clock: Literal["real", "simulated"] = Field(
        default="real", description="simulated: time advances instantly (in-process simulators only)")
    seed: int | None = Field(default=None, ge=0, description="random seed of the simulators (numpy takes >= 0)")
    faults: list[Fault] = Field(
        default_factory=list, description="[[simulation.faults]]: faults the in-process simulators inject "
                                          "(kinds, triggers and effects: microct.faults)")


class ScanConfig(_Strict):
    """A scan configuration: one TOML file per scan."""

    source: InstrumentConfig = Field(description="[source]: the X-ray source")
    rotation: AxisConfig = Field(description="[rotation]: the rotation stage (in degrees)")
    detector: InstrumentConfig = Field(description="[detector]: the flat-panel detector")
    sample_out: AxisConfig | None = Field(default=None, description="[sample_out]: an optional axis that moves "
                                                                    "the sample out for flats")
    geometry: Geometry = Field(description="[geometry]: source, object and detector distances and conventions")
    scan: ScanSettings = Field(description="[scan]: angles, tube settings, exposure, references, time-outs")
    simulation: SimulationSettings = Field(default_factory=SimulationSettings, description="[simulation]: the "
                                           "simulators' clock, seed and faults")

    @model_validator(mode="after")
    def _flats_need_a_place(self):
        if self.sample_out is not None and self.scan.n_flats and self.scan.sample_out_position_mm is None:
            raise ValueError("scan.sample_out_position_mm is required when a [sample_out] axis is configured "
                             "and scan.n_flats > 0")
        return self


def parse_config(data: dict[str, Any], origin: str = "config") -> ScanConfig:
    try:
        return ScanConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigurationError(f"{origin}: {validation_message(error)}") from None


def load_config(path: str | Path | None = None) -> tuple[ScanConfig, str]:
    """Read and validate a TOML file (default: the shipped ``sim.toml``). Returns (config, TOML text)."""
    if path is None:
        text, origin = files("microct.configs").joinpath(DEFAULT_CONFIG).read_text("utf-8"), DEFAULT_CONFIG
    else:
        try:
            text, origin = Path(path).read_text("utf-8"), str(path)  # TOML is UTF-8, whatever the locale
        except OSError as error:
            raise ConfigurationError(f"cannot read configuration {path}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise ConfigurationError(f"{path}: not valid TOML: byte {error.object[error.start]:#04x} at offset "
                                     f"{error.start} is not UTF-8 (save the file as UTF-8)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{origin}: not valid TOML: {error}") from None
    except ValueError:  # tomllib passes int()'s refusal of thousands of digits through
        raise ConfigurationError(f"{origin}: not valid TOML: an integer has thousands of digits") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigurationError(f"{origin}: not valid TOML: arrays or inline tables nested too deeply") from None
    return parse_config(data, origin), text
