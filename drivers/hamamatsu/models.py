"""The Hamamatsu tube models: kV and µA ranges, spot modes (``SpotMode``, ``code`` = the ``CFS``
number), baud rate, whether ``SNR`` reports a vacuum level and whether the controller answers ``SAT``.
Every figure's source is given below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from microct.driverkit import SourceCapabilities, SpotMode, model_from_table

FOCUS_CODES = range(10)
"""The codes ``CFS n`` takes and ``SFC n`` reports: one digit (docs/protocols/hamamatsu-microfocus.md, "Commands")."""


class TubeModel(BaseModel):
    """A model's figures: kV and µA ranges, spot modes by name (``code``: the ``CFS`` number, each its
    own), baud, whether ``SNR`` reports vacuum, whether ``SAT`` is answered."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="the model name; connect warns if the controller's TYP reply does not start "
                                  "with it")
    voltage_range_kv: tuple[float, float] = Field(description="allowed kV set-points, low to high (sent as whole "
                                                              "kV, rounded down); the table's lower bounds, 0, are "
                                                              "the protocol's, not the tube's")
    current_range_ua: tuple[float, float] = Field(description="allowed µA set-points, low to high (sent as whole "
                                                              "µA, rounded down)")
    spot_modes: dict[str, SpotMode] = Field(description="focus modes by name; code: the CFS number, 0-9, each "
                                            "mode its own. Power limits and spot sizes: example figures in the "
                                            "table, to check against the datasheet")
    baudrate: int = Field(gt=0, description="line speed (baud) unless serial.baudrate is set; 38400 for every "
                                            "model of the table (notes, 'Framing')")
    vacuum_in_snr: bool = Field(default=False, description="true: SNR's last field is a vacuum level (pumped "
                                "tubes, e.g. the L10711) and a level outside 2-5 is named as a not-ready cause; "
                                "false: that field is ignored")
    auto_stop_query: bool = Field(default=False, description="the controller answers SAT (its auto-stop time, "
                                  "0-60 s): connect reads it and warns if the auto stop is off or keepalive_s too "
                                  "slow; a refusal is logged, not an error")

    @model_validator(mode="after")
    def _consistent(self):
        codes = [mode.code for mode in self.spot_modes.values()]
        bad = {name: mode.code for name, mode in self.spot_modes.items()
               if type(mode.code) is not int or mode.code not in FOCUS_CODES}
        if bad:
            raise ValueError(f"spot_modes: each mode needs its CFS code, a whole number "
                             f"{FOCUS_CODES.start}-{FOCUS_CODES.stop - 1}; got {bad}")
        if len(set(codes)) != len(codes):
            raise ValueError(f"spot_modes: each mode needs its own code, got {codes}")
        self.capabilities()  # ranges ordered, at least one mode
        return self

    def capabilities(self) -> SourceCapabilities:
        return SourceCapabilities(self.voltage_range_kv, self.current_range_ua, dict(self.spot_modes))


def _mode(code: int, power_limit_w: float, spot_size_um: float, growth_um_per_w: float) -> SpotMode:
    return SpotMode(code=code, power_limit_w=power_limit_w, spot_size_um=spot_size_um,
                    growth_um_per_w=growth_um_per_w)


# Where each figure comes from ("notes": the repository's protocol notes, docs/protocols/hamamatsu-microfocus.md;
# "host code": public
# vendor-integrator host software for these controllers, the CT30K micro-CT control, XrayCtrl classes
# clsCtrlXrayL10711, clsCtrlXrayL12721 and clsCtrlXrayL9181_02):
# - baud 38400 for all three: notes, "Framing"; host code opens the L9181-02 and L10711 at 38400.
# - spot-mode names and CFS codes of the L9181-02 and L10711: notes, "CFS n".
# - L9181-02 130 kV: notes ("0-130 kV L9181-02LT"); 0-300 µA: a public CT-vendor source table
#   (Lumafield burn-in notes: "L9181-02 40-130 kV, 0-300 µA").
# - L10711 160 kV: host code ("160kV L10711"); small-focus floor 0.25 µm: Hamamatsu's X-ray imaging
#   Q&A page ("L10711 with a focal spot size down to 0.25 µm").
# - L10711 vacuum level in SNR: host code (L10711 SVC); the L9181-02 sends 0 there (host code).
# - auto_stop_query (SAT, the auto-stop time): host code, clsCtrlXrayL10711 and clsCtrlXrayL12721 send SAT
#   in their polling cycle and read its number; clsCtrlXrayL9181_02 defines SAT ("auto X-ray stop check")
#   and AST ("auto X-ray stop time setting") and handles their replies, but its polling cycle never sends
#   them. The L9421-02T manual, same command family, documents both (A5, A11). True for all three: a
#   controller refusing SAT is logged at connect, not an error.
# - L12721 300 kV: host code ("300kV L12721"; one comment there says 130 kV); 1000 µA: notes ("up to
#   1000 µA larger models").
# EXAMPLE FIGURES, to check against the datasheet before use: every power limit, every spot size
# other than the L10711 small-focus floor, every growth figure, the L10711 200 µA, the lower kV
# bounds (0: the protocol's, not the tube's), the L12721 spot modes (codes as on the L10711), and the
# L12721 vacuum_in_snr (not in these sources: False, so its SNR vacuum field is not checked).
MODELS: dict[str, TubeModel] = {
    "L9181-02": TubeModel(name="L9181-02", voltage_range_kv=(0, 130), current_range_ua=(0, 300), baudrate=38400,
                          auto_stop_query=True,
                          spot_modes={"small": _mode(0, 8.0, 5.0, 0.6), "middle": _mode(1, 39.0, 20.0, 0.6)}),
    "L10711": TubeModel(name="L10711", voltage_range_kv=(0, 160), current_range_ua=(0, 200), baudrate=38400,
                        vacuum_in_snr=True, auto_stop_query=True,
                        spot_modes={"small": _mode(0, 4.0, 0.25, 0.5), "middle": _mode(1, 10.0, 1.0, 0.5),
                                    "large": _mode(2, 16.0, 5.0, 0.5)}),
    "L12721": TubeModel(name="L12721", voltage_range_kv=(0, 300), current_range_ua=(0, 1000), baudrate=38400,
                        auto_stop_query=True,
                        spot_modes={"small": _mode(0, 10.0, 5.0, 0.5), "middle": _mode(1, 50.0, 20.0, 0.5),
                                    "large": _mode(2, 150.0, 50.0, 0.5)}),
}


def tube_model(model: str, overrides: Mapping[str, Any] | None = None) -> TubeModel:
    """The table entry ``model`` with ``overrides`` replacing its fields one by one (spot modes by
    name, field by field). ConfigurationError naming the key and value for an unknown model or bad field."""
    return model_from_table(MODELS, "model", model, overrides)
