"""Flat/dark correction and FDK cone-beam reconstruction of a microct NXtomo file.

Reconstruction uses RTK's CPU FDK (``pip install microct[recon]``, package
``itk-rtk``). The volume comes out in the SAMPLE frame of ``microct.geometry``
(the frame in which ``simulators.phantoms`` defines its phantoms): x, y, z in mm
at rotation angle zero, z up, the rotation axis at x = y = 0. The array is
indexed ``volume[iz, iy, ix]`` and voxel centre ``(iz, iy, ix)`` sits at
``origin_mm + voxel_size_mm * (iz, iy, ix)``, with ``origin_mm = (z0, y0, x0)``
in the same axis order as the array.

Mapping of our conventions onto RTK's ``ThreeDCircularProjectionGeometry``
(RTK: rotation axis y, source at (sourceOffsetX, sourceOffsetY, SID) of the
rotated frame, detector point (u, v) at (u + projOffsetX, v + projOffsetY,
SID − SDD), gantry angle g rotating the frame as ``Ry(−g)``):

- RTK world (X, Y, Z) = our sample (x, −z, −y);
- gantry angle = −rotation_direction × measured angle;
- SID = SOD, SDD = SDD; sourceOffsetX = −COR offset (the axis is RTK's origin,
  so the focal spot sits at −COR relative to it); sourceOffsetY = 0;
- projOffsetX = detector_offset_u − COR, projOffsetY = detector_offset_v;
- projection images are fed unflipped: column j at u = (j − (cols−1)/2)·pitch,
  row i at v = (i − (rows−1)/2)·pitch (rows run along −z, i.e. RTK +Y).

This was verified numerically: RTK's analytic ``RayEllipsoidIntersection``
projector with this mapping reproduces the simulator's projector
(``simulators.phantoms.line_integrals``) to 1e-5 for rotation_direction ±1
with COR and detector offsets, and FDK volumes of simulated scans put the
phantom where it is (tests/physics/test_recon.py).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from microct.errors import MicroCTError
from microct.geometry import Geometry

MIN_COUNTS = 1.0  # P − D and F − D are raised to at least this many counts before −log
DETECTOR = "entry/instrument/detector"
CT = "entry/instrument/ct_geometry"


class ReconstructionError(MicroCTError):
    """The file cannot be reconstructed (missing fields, no projections/flats) or RTK failed."""


class MissingDependencyError(ReconstructionError, ImportError):
    """An optional dependency (itk-rtk, matplotlib) is not installed."""


class Projections(NamedTuple):
    """Flat/dark-corrected projections of a scan.

    line_integrals: float32 [n, rows, cols], −log((P − D)/(F − D)) (dimensionless);
    angles_deg: float64 [n], measured rotation angles; geometry: the file's
    ct_geometry in mm; pixel_pitch_mm: detector pixel pitch (as binned).
    """

    line_integrals: np.ndarray
    angles_deg: np.ndarray
    geometry: Geometry
    pixel_pitch_mm: float


class Volume(NamedTuple):
    """µ in 1/mm as float32 ``[z, y, x]``; voxel size (mm); origin (z0, y0, x0) mm of voxel [0, 0, 0]."""

    volume: np.ndarray
    voxel_size_mm: float
    origin_mm: tuple[float, float, float]


def read_geometry(f: h5py.File) -> tuple[Geometry, float]:
    """(Geometry in mm, pixel pitch mm) from an open microct NXtomo file (stored in m)."""
    try:
        ct = f[CT]
        mm = {name: float(ct[name][()]) * 1e3 for name in
              ("source_object_distance", "source_detector_distance", "detector_offset_u",
               "detector_offset_v", "centre_of_rotation_offset")}
        geometry = Geometry(mm["source_object_distance"], mm["source_detector_distance"],
                            mm["detector_offset_u"], mm["detector_offset_v"],
                            mm["centre_of_rotation_offset"], 1 if int(ct["rotation_direction"][()]) > 0 else -1)
        pitch_mm = float(f[f"{DETECTOR}/x_pixel_size"][()]) * 1e3
    except (KeyError, ValueError) as error:
        raise ReconstructionError(f"{f.filename}: no usable {CT} / detector pixel size: {error}") from None
    return geometry, pitch_mm


def references(f: h5py.File) -> tuple[np.ndarray, np.ndarray]:
    """(mean dark D, mean flat F − D clipped to ≥ MIN_COUNTS) as float32 frames, read one frame at a time.

    Raises ReconstructionError if the file holds no flat. Without darks, D = 0.
    """
    data, keys = f[f"{DETECTOR}/data"], f[f"{DETECTOR}/image_key"][()]

    def mean(key: int) -> np.ndarray | None:
        index = np.flatnonzero(keys == key)
        if index.size == 0:
            return None
        total = np.zeros(data.shape[1:], np.float64)
        for i in index:
            total += data[i]
        return (total / index.size).astype(np.float32)

    flat = mean(1)
    if flat is None:
        raise ReconstructionError(f"{f.filename}: no flat-field frames (image_key 1); cannot correct")
    dark = mean(2)
    if dark is None:
        dark = np.zeros_like(flat)
    return dark, np.maximum(flat - dark, MIN_COUNTS)


def line_integrals(frame: np.ndarray, dark: np.ndarray, open_beam: np.ndarray) -> np.ndarray:
    """−log((P − D)/(F − D)) as float32; P − D below MIN_COUNTS (1 count) is raised to it.

    ``open_beam`` is F − D, already clipped by ``references``; so every value is
    finite, at most log(F − D), and slightly negative where noise makes P > F.
    """
    signal = np.maximum(frame.astype(np.float32) - dark, MIN_COUNTS)
    return -np.log(signal / open_beam)


class Scan(NamedTuple):
    """An open scan file's frames, the indices and measured angles (degrees) of its projections,
    and its averaged dark and flat frames (see ``references``)."""

    file: h5py.File
    data: h5py.Dataset
    projections: np.ndarray
    angles_deg: np.ndarray
    dark: np.ndarray
    open_beam: np.ndarray


def _require_sources(path: Path, data: h5py.Dataset) -> None:
    """ReconstructionError naming each detector file (and dataset) that ``data``, a virtual dataset,
    maps but that cannot be read: HDF5 itself would read those frames as 0 without a word."""
    unreadable = []
    for name, dataset in dict.fromkeys((s.file_name, s.dset_name) for s in data.virtual_sources()):
        source = path.parent / name  # HDF5 looks a relative name up from the virtual dataset's folder
        try:
            with h5py.File(source, "r") as f:
                f[dataset]
        except (OSError, KeyError) as error:
            unreadable.append(f"{source}:{dataset} ({error})")
    if unreadable:
        raise ReconstructionError(f"{path}: its frames are in detector files that cannot be read: "
                                  + "; ".join(unreadable))


@contextlib.contextmanager
def open_scan(path: str | Path) -> Iterator[Scan]:
    """Open a microct NXtomo file for reading; ReconstructionError if it cannot be read or has no
    projections or no flats."""
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ReconstructionError(f"cannot open {path}: {error}") from None
    with f:
        try:
            data, keys = f[f"{DETECTOR}/data"], f[f"{DETECTOR}/image_key"][()]
            angles = f["entry/sample/rotation_angle"][()]
        except KeyError as error:
            raise ReconstructionError(f"{path}: not a microct NXtomo file ({error})") from None
        if data.is_virtual:
            _require_sources(Path(path), data)
        index = np.flatnonzero(keys == 0)
        if index.size == 0:
            raise ReconstructionError(f"{path}: no projections (image_key 0)")
        yield Scan(f, data, index, angles[index].astype(np.float64), *references(f))


def corrected_projections(path: str | Path) -> Projections:
    """Read a microct NXtomo file and return its flat/dark-corrected projections.

    Reads one frame at a time (darks and flats are averaged on the fly); the
    result is float32 [n_projections, rows, cols]. Clipping: F − D and P − D
    below 1 count are raised to 1 count, so a dead pixel or a fully absorbed
    ray gives a finite value (≤ ln(F − D)) instead of inf/NaN; saturated pixels
    are not treated. Without darks D = 0. Raises ReconstructionError if the
    file cannot be read or has no projections or no flats.
    """
    with open_scan(path) as scan:
        geometry, pitch_mm = read_geometry(scan.file)
        out = np.empty((scan.projections.size, *scan.data.shape[1:]), np.float32)
        for k, i in enumerate(scan.projections):
            out[k] = line_integrals(scan.data[i], scan.dark, scan.open_beam)
    return Projections(out, scan.angles_deg, geometry, pitch_mm)


def import_rtk():
    """(itk, itk.RTK); MissingDependencyError naming the extra if itk-rtk is not installed."""
    try:
        import itk
        from itk import RTK as rtk
    except ImportError as error:
        raise MissingDependencyError(f"FDK reconstruction needs itk-rtk, which is not importable ({error}); "
                                     "install it with: pip install microct[recon]") from None
    return itk, rtk


def rtk_geometry(rtk, geometry: Geometry, angles_deg: np.ndarray):
    """RTK ThreeDCircularProjectionGeometry for our ``geometry`` (mm) and measured angles (module docstring)."""
    g = geometry
    cor = g.centre_of_rotation_offset_mm
    out = rtk.ThreeDCircularProjectionGeometry.New()
    for angle in angles_deg:
        out.AddProjection(g.source_object_distance_mm, g.source_detector_distance_mm,
                          -g.rotation_direction * float(angle),
                          g.detector_offset_u_mm - cor, g.detector_offset_v_mm,
                          0.0, 0.0, -cor, 0.0)
    return out


def is_short_scan(angles_deg: np.ndarray) -> bool:
    """True if the angles leave one gap (wrapped at 360°) wider than twice the median step: needs Parker weights."""
    a = np.sort(np.mod(np.asarray(angles_deg, float), 360.0))
    gaps = np.diff(np.append(a, a[0] + 360.0))
    return bool(gaps.max() > 2.0 * np.median(gaps))


def default_grid(geometry: Geometry, frame_shape: tuple[int, int], pitch_mm: float,
                 volume_shape: tuple[int, int, int] | None = None,
                 voxel_size_mm: float | None = None, centre_z_mm: float | None = None
                 ) -> tuple[tuple[int, int, int], float, tuple[float, float, float]]:
    """(shape [nz, ny, nx], voxel mm, origin (z0, y0, x0) mm) of the reconstruction grid.

    Defaults: voxel = pitch / M; x and y span the detector width at the axis,
    centred on the axis; z spans its height, centred on ``centre_z_mm`` or else
    where the detector centre projects onto the axis (z = −detector_offset_v / M).
    """
    rows, cols = frame_shape
    voxel = pitch_mm / geometry.magnification if voxel_size_mm is None else float(voxel_size_mm)
    if voxel <= 0:
        raise ReconstructionError(f"voxel_size_mm must be positive, got {voxel!r}")
    if volume_shape is None:  # the detector's extent at the axis, in voxels
        n_xy = math.ceil(cols * pitch_mm / geometry.magnification / voxel - 1e-6)
        volume_shape = (math.ceil(rows * pitch_mm / geometry.magnification / voxel - 1e-6), n_xy, n_xy)
    nz, ny, nx = (int(n) for n in volume_shape)
    if min(nz, ny, nx) < 1:
        raise ReconstructionError(f"volume_shape must be three positive sizes, got {volume_shape!r}")
    z_centre = -geometry.detector_offset_v_mm / geometry.magnification if centre_z_mm is None else centre_z_mm
    origin = (z_centre - (nz - 1) / 2 * voxel, -(ny - 1) / 2 * voxel, -(nx - 1) / 2 * voxel)
    return (nz, ny, nx), voxel, origin


def fdk_reconstruct(path: str | Path, volume_shape: tuple[int, int, int] | None = None,
                    voxel_size_mm: float | None = None, centre_z_mm: float | None = None) -> Volume:
    """FDK reconstruction (RTK, CPU, plain ramp filter) of a microct NXtomo file.

    Returns ``Volume(volume [z, y, x] float32 in µ per mm, voxel_size_mm,
    origin_mm (z0, y0, x0))`` in the sample frame (module docstring);
    ``volume_shape`` is (nz, ny, nx); it, the voxel size and the grid's
    z centre (``centre_z_mm``) default as in ``default_grid``. Short scans
    (``is_short_scan``) get RTK's Parker weights. There is no displaced-detector
    weighting: with a detector offset, the object must stay inside the field of
    view. Memory: the projection stack and the volume, both float32. Raises
    MissingDependencyError without itk-rtk, ReconstructionError for an
    unusable file or an RTK failure.
    """
    itk, rtk = import_rtk()
    proj = corrected_projections(path)
    n, rows, cols = proj.line_integrals.shape
    (nz, ny, nx), voxel, (z0, y0, x0) = default_grid(proj.geometry, (rows, cols), proj.pixel_pitch_mm,
                                                     volume_shape, voxel_size_mm, centre_z_mm)
    image_type = itk.Image[itk.F, 3]
    stack = itk.image_view_from_array(proj.line_integrals)  # size [cols, rows, n]
    stack.SetSpacing([proj.pixel_pitch_mm, proj.pixel_pitch_mm, 1.0])
    stack.SetOrigin([-(cols - 1) / 2 * proj.pixel_pitch_mm, -(rows - 1) / 2 * proj.pixel_pitch_mm, 0.0])
    geometry = rtk_geometry(rtk, proj.geometry, proj.angles_deg)

    # RTK grid in its world (X, Y, Z) = (x, −z, −y): X runs like x, Y and Z run against z and y.
    grid = rtk.ConstantImageSource[image_type].New()
    grid.SetOrigin([x0, -(z0 + (nz - 1) * voxel), -(y0 + (ny - 1) * voxel)])
    grid.SetSpacing([voxel] * 3)
    grid.SetSize([nx, nz, ny])
    grid.SetConstant(0.0)

    projections = stack
    if is_short_scan(proj.angles_deg):
        parker = rtk.ParkerShortScanImageFilter[image_type].New()
        parker.SetInput(stack)
        parker.SetGeometry(geometry)
        projections = parker.GetOutput()
    fdk = rtk.FDKConeBeamReconstructionFilter[image_type].New()
    fdk.SetInput(0, grid.GetOutput())
    fdk.SetInput(1, projections)
    fdk.SetGeometry(geometry)
    fdk.GetRampFilter().SetTruncationCorrection(0.0)
    fdk.GetRampFilter().SetHannCutFrequency(0.0)
    try:
        fdk.Update()
    except RuntimeError as error:
        raise ReconstructionError(f"RTK FDK failed on {path}: {error}") from None
    rtk_volume = itk.array_from_image(fdk.GetOutput())  # [Z index, Y index, X index]
    volume = np.ascontiguousarray(rtk_volume.transpose(1, 0, 2)[::-1, ::-1, :])  # → [z, y, x]
    return Volume(volume, voxel, (z0, y0, x0))
