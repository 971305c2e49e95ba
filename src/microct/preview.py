"""PNG preview of a microct NXtomo scan: a corrected projection, a sinogram, a reconstructed slice.

Needs matplotlib (``pip install microct[preview]``); the slice needs itk-rtk
(``pip install microct[recon]``), and without it the third panel says so.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from microct.recon import (
    DETECTOR,
    MissingDependencyError,
    ReconstructionError,
    default_grid,
    fdk_reconstruct,
    import_rtk,
    line_integrals,
    open_scan,
    read_geometry,
)

FIGSIZE_IN = (15.0, 4.8)
DPI = 100  # the PNG is FIGSIZE_IN × DPI = 1500 × 480 pixels


def _scan_views(path: Path) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, int]:
    """(transmission of the first projection, its angle in degrees, sinogram ∫µ dl [n, cols] of the
    centre row, angles in degrees, centre row index), reading one frame at a time."""
    with open_scan(path) as scan:
        data, dark, open_beam, index = scan.data, scan.dark, scan.open_beam, scan.projections
        row = data.shape[1] // 2
        first = np.exp(-line_integrals(data[index[0]], dark, open_beam))
        sinogram = np.stack([line_integrals(data[i, row:row + 1], dark[row:row + 1], open_beam[row:row + 1])[0]
                             for i in index])
    return first, float(scan.angles_deg[0]), sinogram, scan.angles_deg, row


def _centre_slice(path: Path):
    """(slice µ [y, x] in 1/mm at z = 0, extent (x0, x1, y0, y1) mm) or None without itk-rtk."""
    try:
        import_rtk()
    except MissingDependencyError:
        return None
    with h5py.File(path, "r") as f:
        geometry, pitch_mm = read_geometry(f)
        cols = f[f"{DETECTOR}/data"].shape[2]
    (_, n, _), voxel, _ = default_grid(geometry, (1, cols), pitch_mm)
    volume, voxel, (_, y0, x0) = fdk_reconstruct(path, volume_shape=(1, n, n), centre_z_mm=0.0)
    half = voxel / 2
    return volume[0], (x0 - half, x0 + (n - 1) * voxel + half, y0 - half, y0 + (n - 1) * voxel + half)


def write_preview(nxs_path: str | Path, png_path: str | Path | None = None) -> Path:
    """Write a three-panel PNG (1500 × 480 px) for a microct NXtomo file and return its path.

    Panels: transmission (P − D)/(F − D) of the first projection; the
    sinogram (∫µ dl) of the centre detector row, angle against column; the
    FDK slice z = 0 of the sample frame (µ in 1/mm, x right, y up, seen from
    above) when itk-rtk is importable, else a note on how to install it.
    ``png_path`` defaults to ``nxs_path`` with the suffix ``.png``; an existing
    PNG is overwritten. Raises MissingDependencyError without matplotlib,
    ReconstructionError for an unreadable file.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise MissingDependencyError(f"previews need matplotlib ({error}); "
                                     "install it with: pip install microct[preview]") from None
    nxs_path = Path(nxs_path)
    png_path = nxs_path.with_suffix(".png") if png_path is None else Path(png_path)
    first, first_angle, sinogram, angles, row = _scan_views(nxs_path)
    centre = _centre_slice(nxs_path)

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without pyplot: no GUI, no global backend switch
    ax1, ax2, ax3 = fig.subplots(1, 3)
    image = ax1.imshow(first, cmap="gray", vmin=0.0, vmax=max(1.0, float(np.percentile(first, 99.5))))
    ax1.set(title=f"Projection at {first_angle:.1f}°, (P−D)/(F−D)", xlabel="column (pixel)",
            ylabel="row (pixel)")
    fig.colorbar(image, ax=ax1, label="transmission (1)")

    image = ax2.imshow(sinogram, cmap="gray", aspect="auto", interpolation="nearest",
                       extent=(-0.5, sinogram.shape[1] - 0.5, float(angles[-1]), float(angles[0])))
    ax2.set(title=f"Sinogram of detector row {row}", xlabel="column (pixel)", ylabel="rotation angle (degree)")
    fig.colorbar(image, ax=ax2, label="∫µ dl = −ln transmission (1)")

    if centre is None:
        ax3.axis("off")
        ax3.text(0.5, 0.5, "FDK slice needs itk-rtk:\npip install microct[recon]", ha="center", va="center",
                 fontsize=13, transform=ax3.transAxes)
        ax3.set_title("Reconstruction z = 0 (not available)")
    else:
        slice_, extent = centre
        image = ax3.imshow(slice_, cmap="gray", origin="lower", extent=extent,
                           vmin=min(0.0, float(np.percentile(slice_, 0.5))), vmax=float(np.percentile(slice_, 99.9)))
        ax3.set(title="FDK slice z = 0 mm, seen from above", xlabel="x (mm)", ylabel="y (mm)")
        fig.colorbar(image, ax=ax3, label="µ (1/mm)")
    fig.suptitle(nxs_path.name)
    try:
        fig.savefig(png_path, dpi=DPI)
    except OSError as error:
        raise ReconstructionError(f"cannot write {png_path}: {error}") from None
    return png_path
