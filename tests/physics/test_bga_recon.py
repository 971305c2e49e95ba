"""The default demo scan (bga phantom), corrected and reconstructed with RTK's FDK, shows every defect."""

from __future__ import annotations

import numpy as np
import pytest

from microct.config import load_config
from microct.instruments import build_instruments
from microct.recon import fdk_reconstruct
from microct.sequencer import run_scan
from microct.simulators.phantoms import BGA_LAYOUT, SOLDER_MU, get_phantom, mu_at


@pytest.fixture(scope="module")
def reconstruction(tmp_path_factory):
    config, text = load_config()  # the shipped sim.toml: bga, M = 10, 256 × 256, 180 projections
    out = tmp_path_factory.mktemp("bga") / "bga.nxs"
    run_scan(config, build_instruments(config), out, text)
    volume, voxel, origin = fdk_reconstruct(out, volume_shape=(40, 256, 256), centre_z_mm=0.0)
    axes = [origin[i] + voxel * np.arange(volume.shape[i]) for i in range(3)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return volume, voxel, origin, np.stack([x, y, z], axis=-1)


def value_at(reconstruction, point_mm) -> float:
    volume, voxel, origin, _ = reconstruction
    index = tuple(round((point_mm[axis] - origin[i]) / voxel) for i, axis in enumerate((2, 1, 0)))
    return float(volume[index])


def test_every_void_and_the_crack_show(reconstruction):
    for centre, radius in zip(BGA_LAYOUT.void_centres_mm, BGA_LAYOUT.void_radii_mm):
        assert value_at(reconstruction, centre) < 0.25 * SOLDER_MU, f"void of radius {radius} mm at {centre}"
    assert value_at(reconstruction, BGA_LAYOUT.crack.centre_mm) < 0.6 * SOLDER_MU  # 50 µm thick, 40 µm voxels


def test_attenuation_inside_every_ball_within_10_percent(reconstruction):
    volume, _, _, points = reconstruction
    truth = mu_at(get_phantom("bga"), points)
    for ball, centre in enumerate(BGA_LAYOUT.ball_centres_mm):
        inner = (np.linalg.norm(points - np.array(centre), axis=-1) < 0.6 * BGA_LAYOUT.ball_radius_mm)
        inner &= truth == SOLDER_MU  # solder only: not in a void or the crack
        assert volume[inner].mean() == pytest.approx(SOLDER_MU, rel=0.10), f"ball {ball}"
