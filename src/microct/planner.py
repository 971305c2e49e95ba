"""Resolution and time planner: what a scan will resolve and how long it takes, before the tube is on.

Formulas (lengths in µm; M = SDD / SOD; p = detector pixel pitch after binning):

- focal spot f = max(spot_size_um, growth_um_per_w × P) at target power P = kV × µA / 1000
- geometric unsharpness at the detector U_g = f × (M − 1)
- detector unsharpness at the detector U_d = 2 × p (two pixels: the Nyquist limit)
- effective resolution at the object R = √(U_g² + U_d²) / M; the smallest feature resolved ≈ R
- R is smallest at M_opt = 1 + (U_d / f)², where R = U_d·f / √(U_d² + f²); R falls as M rises towards M_opt
- spot-limited when U_g > U_d, detector-limited otherwise.
- sample in view (lengths in mm; D = ``scan.sample_diameter_mm``, W = columns × p, SDD held): a sample
  centred on the axis and the central ray fills the detector width when its tangent rays reach the detector's
  edges, at SOD = (D/2)·√(1 + (2·SDD/W)²), so M_view = SDD / that SOD (≈ W / D); the best magnification
  for the sample is min(M_opt, M_view). Detector and centre-of-rotation offsets are not counted.

M_opt alone is often out of reach (a 6.4 µm spot and 400 µm pixels give M_opt ≈ 15 600 and a field of
view a few µm wide), so the plan reports the field of view at M_opt and, given the sample's diameter,
bounds its advice by M_view.

The focal spot's blur is that of a feature at the rotation axis; features
nearer the source blur more. The time estimate assumes the sample-out axis
starts at 0 (sample in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from microct.config import ScanConfig
from microct.devices.axis import move_duration_s
from microct.instruments import Instruments

FORMULA = "R = sqrt((f·(M−1))² + (2·p)²) / M,  M = SDD/SOD,  f = focal spot at the target power,  p = pixel pitch"


def effective_resolution_um(spot_um: float, detector_unsharpness_um: float, magnification: float) -> float:
    """Resolution at the object (µm): √((f(M−1))² + U_d²) / M."""
    return math.hypot(spot_um * (magnification - 1.0), detector_unsharpness_um) / magnification


def optimum_magnification(spot_um: float, detector_unsharpness_um: float) -> float:
    """The M that minimises the effective resolution: 1 + (U_d / f)²."""
    return 1.0 + (detector_unsharpness_um / spot_um) ** 2


def largest_magnification_in_view(sample_diameter_mm: float, detector_width_mm: float,
                                  source_detector_distance_mm: float) -> float:
    """Largest M (SDD held, SOD shortened) at which a sample of this diameter, centred on the rotation axis
    and the central ray, casts its shadow within the detector width (all mm): SDD / ((D/2)·√(1 + (2·SDD/W)²))."""
    sod_mm = sample_diameter_mm / 2.0 * math.hypot(1.0, 2.0 * source_detector_distance_mm / detector_width_mm)
    return source_detector_distance_mm / sod_mm


@dataclass(frozen=True)
class Plan:
    magnification: float
    pixel_pitch_um: float
    voxel_size_um: float
    field_of_view_mm: tuple[float, float]  # (width, height) at the rotation axis
    power_w: float
    spot_mode: str
    focal_spot_um: float
    geometric_unsharpness_um: float  # at the detector
    detector_unsharpness_um: float  # at the detector
    detector_limited_resolution_um: float  # at the object: U_d / M
    effective_resolution_um: float  # at the object
    optimum_magnification: float
    optimum_resolution_um: float
    optimum_field_of_view_mm: float  # width at the rotation axis at the optimum magnification
    sample_diameter_mm: float | None  # scan.sample_diameter_mm
    largest_magnification_in_view: float | None  # SDD held; None without a sample diameter
    best_magnification: float  # min(optimum, largest in view)
    best_resolution_um: float
    limited_by: str  # "focal spot" or "detector"
    projection_interval_s: float  # move + settle + frames, per projection
    scan_time_s: float
    warnings: tuple[str, ...]


def plan_scan(config: ScanConfig, instruments: Instruments) -> Plan:
    """Plan from the configuration and the instruments' declared capabilities (no I/O)."""
    scan, geometry = config.scan, config.geometry
    caps = instruments.detector.capabilities
    magnification = geometry.magnification
    pitch = caps.pixel_pitch_um * scan.binning
    power = scan.voltage_kv * scan.current_ua / 1000.0
    modes = instruments.source.capabilities.spot_modes
    spot = modes[scan.spot_mode].spot_size_at_um(power)
    u_g, u_d = spot * (magnification - 1.0), 2.0 * pitch
    resolution = effective_resolution_um(spot, u_d, magnification)
    m_opt = optimum_magnification(spot, u_d)
    r_opt = effective_resolution_um(spot, u_d, m_opt)
    rows, cols = caps.shape[0] // scan.binning, caps.shape[1] // scan.binning
    width_mm = cols * pitch / 1000.0
    fov = (width_mm / magnification, rows * pitch / magnification / 1000.0)
    diameter = scan.sample_diameter_mm
    m_view = None if diameter is None else largest_magnification_in_view(
        diameter, width_mm, geometry.source_detector_distance_mm)
    m_best = m_opt if m_view is None else min(m_opt, m_view)
    r_best = effective_resolution_um(spot, u_d, m_best)

    warnings = []
    better = [(m.spot_size_at_um(power), name) for name, m in modes.items()
              if power <= m.power_limit_w and m.spot_size_at_um(power) < spot * 0.95]
    if better:
        size, name = min(better)
        warnings.append(f"spot mode {scan.spot_mode!r} gives a {spot:.3g} µm spot at {power:.3g} W; "
                        f"{name!r} allows this power with a {size:.3g} µm spot")
    warnings += reference_warnings(config, instruments.sample_out is not None)
    if m_view is not None and magnification > m_view:
        warnings.append(f"the {diameter:g} mm sample does not fit the field of view at M = {magnification:.3g} "
                        f"({fov[0]:.3g} mm wide): its projections are truncated; M ≤ {m_view:.3g} keeps it in view")
    if u_g > 2 * u_d:
        m_equal = 1.0 + u_d / spot
        warnings.append(f"focal-spot-limited: the spot's blur f·(M−1) = {u_g:.3g} µm is {u_g / u_d:.3g}× the "
                        f"detector's 2·p = {u_d:.3g} µm, so the magnification enlarges blur, not detail "
                        f"(R = {resolution:.3g} µm over {resolution / (pitch / magnification):.3g} voxels); "
                        f"a smaller spot (less power) would sharpen it, or M = {m_equal:.3g} gives "
                        f"R = {effective_resolution_um(spot, u_d, m_equal):.3g} µm with a "
                        f"{magnification / m_equal:.3g}× wider field of view")
    elif resolution > 1.25 * r_best and u_d >= u_g:
        if m_view is None:
            warnings.append(f"detector-limited at M = {magnification:.3g} (R = {resolution:.3g} µm): the optimum "
                            f"M = {m_opt:.3g} gives R = {r_opt:.3g} µm if the sample fits its "
                            f"{width_mm / m_opt:.3g} mm field of view; set scan.sample_diameter_mm to bound the "
                            f"magnification by the sample")
        else:
            reason = "the optimum" if m_best == m_opt else f"the largest that keeps the {diameter:g} mm sample in view"
            warnings.append(f"detector-limited at M = {magnification:.3g} (R = {resolution:.3g} µm): "
                            f"M = {m_best:.3g} ({reason}) gives R = {r_best:.3g} µm")
    return Plan(magnification=magnification, pixel_pitch_um=pitch, voxel_size_um=geometry.voxel_size_um(pitch),
                field_of_view_mm=fov, power_w=power, spot_mode=scan.spot_mode, focal_spot_um=spot,
                geometric_unsharpness_um=u_g, detector_unsharpness_um=u_d,
                detector_limited_resolution_um=u_d / magnification, effective_resolution_um=resolution,
                optimum_magnification=m_opt, optimum_resolution_um=r_opt, optimum_field_of_view_mm=width_mm / m_opt,
                sample_diameter_mm=diameter, largest_magnification_in_view=m_view, best_magnification=m_best,
                best_resolution_um=r_best,
                limited_by="focal spot" if u_g > u_d else "detector",
                projection_interval_s=projection_interval_s(config, instruments),
                scan_time_s=scan_time_s(config, instruments),
                warnings=tuple(warnings))


def reference_warnings(config: ScanConfig, has_sample_out: bool) -> list[str]:
    """What the scan's projections will lack for normalisation: no darks, no flats (none asked for, or no
    [sample_out] axis to move the sample out for them). ``microct plan`` and the scan's start say it."""
    scan, found = config.scan, []
    if scan.n_flats == 0:
        found.append("scan.n_flats = 0: no flat fields; the projections cannot be normalised from this file "
                     "(`microct preview` refuses it) and nothing checks that the beam reaches the detector")
    elif not has_sample_out:
        found.append(f"scan.n_flats = {scan.n_flats} but no [sample_out] axis is configured to move the sample "
                     f"out: no flat fields will be taken")
    if scan.n_darks == 0:
        found.append("scan.n_darks = 0: no dark frames; the detector offset is not in this file and the flats "
                     "are not checked against darks")
    return found


def projection_interval_s(config: ScanConfig, instruments: Instruments) -> float:
    """Time (s) from one projection to the next: the step move, settling, skipped and averaged frames."""
    scan, rotation = config.scan, instruments.rotation.capabilities
    angles = scan.angles_deg()
    step = abs(angles[1] - angles[0]) if len(angles) > 1 else 0.0
    return (move_duration_s(step, rotation.max_velocity, rotation.acceleration) + scan.settle_s
            + (scan.frames_skipped + scan.frames_averaged) * scan.exposure_s)


def scan_time_s(config: ScanConfig, instruments: Instruments) -> float:
    """Estimated acquisition time (s): exposures, moves, settling and ``stable_hold_s``; not the warm-up,
    nor the tube's ramp to its set-points (drivers do not declare ramp rates)."""
    scan = config.scan
    frame_s = scan.exposure_s
    rounds = 2 if scan.references_at == "both" else 1
    rotation = instruments.rotation.capabilities
    angles = scan.angles_deg()
    total = scan.n_projections * projection_interval_s(config, instruments) + scan.stable_hold_s
    total += rounds * scan.n_darks * scan.frames_averaged * frame_s
    if instruments.sample_out is not None and scan.n_flats:
        out = instruments.sample_out.capabilities
        there_and_back = 2 * move_duration_s(scan.sample_out_position_mm or 0.0, out.max_velocity, out.acceleration)
        total += rounds * (there_and_back + scan.settle_s + (scan.frames_skipped + scan.n_flats * scan.frames_averaged)
                           * frame_s)
    if scan.return_to_start:
        total += move_duration_s(angles[-1] - scan.start_deg, rotation.max_velocity, rotation.acceleration)
    return total
