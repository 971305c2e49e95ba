"""PILATUS camserver driver: frames per second from image file to HDF5, against a bare read loop.

    python benchmarks/bench_camserver.py [--frames 300] [--folder /dev/shm]

For a 300K (487 × 619) and a 2M (1475 × 1679):

1. Bare loop: open each TIFF, check nothing, ``np.fromfile`` the int32 pixels after the 4096-byte
   header (the floor of any reader of these files); and the same plus a plain clip to uint16 and
   NXtomoWriter.append ("bare→HDF5", the floor of any reader that files the frames).
2. Driver, file → HDF5: ``CamserverDetector.acquire(n)`` over pyvisa-py, every frame appended to an
   NXtomoWriter. The camserver here is a stub served in this process that answers with the codec's
   replies and hard-links ready image files into ImgPath at once, so only the driver's work is timed:
   polling, size and TIFF checks, reading, the pixel mask, clipping to uint16, deleting the file, and
   the HDF5 write. Ratios: driver frames/s ÷ bare loop, and ÷ bare→HDF5.
3. End to end with the real simulator (`microct sim serve camserver`, its own process, beam current 0
   so that its frames cost no Poisson noise; period 2 ms): what the pair sustains on this machine, the
   simulator's file writing included.

Image files go to ``--folder`` (default /dev/shm, a ramdisk, as on a real detector computer).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from microct.drivers.camserver import codec, models
from microct.drivers.camserver.driver import CamserverDetector, CamserverOptions
from microct.geometry import Geometry
from microct.nexus import FrameInfo, NXtomoWriter, ScanHeader
from microct.simulators.wire import WireServer

SIZES = {"300K": "487 × 619", "2M": "1475 × 1679"}
DISTINCT_FILES = 8  # ready image files, linked in turn
CHUNK = 50          # frames per acquire()


class LinkingCamserver:
    """A camserver stub: the codec's replies; ``Exposure`` hard-links the ready files into ImgPath."""

    request_terminators = codec.CONTROL_CHARACTERS

    def __init__(self, root: Path, ready: list[Path]) -> None:
        self.root, self.ready = root, ready
        self.image_path, self.n_images = "/", 1

    def respond(self, line: bytes) -> list[bytes]:
        name, _, argument = line.decode().partition(" ")
        replies = {"Version": lambda: codec.Reply(24, True, codec.VERSION),
                   "ExpTime": lambda: codec.Reply(15, True, codec.exposure_time_text(float(argument))),
                   "ExpPeriod": lambda: codec.Reply(15, True, codec.exposure_period_text(float(argument))),
                   "NImages": lambda: self._n_images(int(argument)),
                   "ImgPath": lambda: self._image_path(argument),
                   "Exposure": lambda: self._exposure(argument)}
        answer = replies[name]()
        return [codec.format_reply(reply) for reply in (answer if isinstance(answer, list) else [answer])]

    def _n_images(self, n: int) -> codec.Reply:
        self.n_images = n
        return codec.Reply(15, True, codec.n_images_text(n))

    def _image_path(self, path: str) -> codec.Reply:
        self.image_path = codec.image_path_text(path)
        (self.root / self.image_path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        return codec.Reply(10, True, self.image_path)

    def _exposure(self, name: str) -> list[codec.Reply]:
        names = codec.series_names(name, self.n_images)
        for i, each in enumerate(names):
            os.link(self.ready[i % len(self.ready)], self.root / self.image_path.lstrip("/") / each)
        return [codec.Reply(15, True, " Starting"), codec.Reply(7, True, self.image_path + names[-1])]


def ready_files(folder: Path, model: str) -> list[Path]:
    """DISTINCT_FILES camserver TIFFs of ``model`` (counts, gaps −1, the same few bad pixels −2)."""
    width, height = models.SIZES[model]
    rng = np.random.default_rng(1)
    gaps = models.gap_mask(width, height)
    bad = rng.choice(width * height, 5, replace=False)
    paths = []
    for i in range(DISTINCT_FILES):
        counts = rng.poisson(2000, (height, width)).astype(np.int32)
        counts[gaps] = codec.GAP_VALUE
        counts.flat[bad] = codec.BAD_VALUE
        paths.append(folder / f"ready_{i}.tif")
        paths[-1].write_bytes(codec.encode_tiff(counts, f"# Detector: PILATUS {model}"))
    return paths


def bare_loop(paths: list[Path], frames: int, shape: tuple[int, int], out: Path | None = None) -> float:
    """Frames/s reading the files in turn: open, skip the header, np.fromfile; with ``out``, each frame
    clipped to uint16 and appended to an NXtomoWriter there."""
    count = shape[0] * shape[1]
    writer = writer_for(out, shape) if out else None
    start = time.perf_counter()
    for i in range(frames):
        with open(paths[i % len(paths)], "rb") as file:
            file.seek(codec.TIFF_HEADER_BYTES)
            data = np.fromfile(file, dtype="<i4", count=count)
        assert data.size == count
        if writer:
            writer.append(np.clip(data, 0, 65535).astype(np.uint16).reshape(shape),
                          FrameInfo(0, 0.0, 0.001, time.time(), 80.0, 100.0))
    elapsed = time.perf_counter() - start
    if writer:
        writer.close("complete", time.time())
        out.unlink()
    return frames / elapsed


def writer_for(path: Path, shape: tuple[int, int]) -> NXtomoWriter:
    header = ScanHeader(title="bench", start_time=time.time(), frame_shape=shape, pixel_pitch_um=172.0,
                        saturation_value=65535, geometry=Geometry(50.0, 500.0), voltage_kv=80.0, current_ua=100.0,
                        focal_spot_mode="small", focal_spot_size_um=5.0, configuration_toml="")
    return NXtomoWriter(path, header)


def driver_to_hdf5(detector: CamserverDetector, frames: int, out: Path) -> float:
    """Frames/s from acquire(CHUNK) to NXtomoWriter.append, ``frames`` in all."""
    detector.connect()
    detector.set_exposure_s(0.001)
    writer = writer_for(out, detector.shape)
    start = time.perf_counter()
    done = 0
    while done < frames:
        for frame in detector.acquire(min(CHUNK, frames - done)):
            writer.append(frame.data, FrameInfo(0, 0.0, 0.001, frame.timestamp, 80.0, 100.0))
            done += 1
    elapsed = time.perf_counter() - start
    writer.close("complete", time.time())
    detector.close()
    out.unlink()
    return frames / elapsed


def options(model: str, root: Path, **more) -> CamserverOptions:
    return CamserverOptions(model=model, image_path="/ramdisk/bench", local_image_path=str(root / "ramdisk/bench"),
                            margin_s=30.0, reply_timeout_s=5.0, **more)


@contextlib.contextmanager
def served_simulator(root: Path, model: str) -> Iterator[str]:
    process = subprocess.Popen([sys.executable, "-m", "microct", "sim", "serve", "camserver", "--tcp", "0",
                                "-O", f"image_root={root}", "-O", f"model={model}", "-O", "current_ua=0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield f"TCPIP::127.0.0.1::{process.stdout.readline().strip().rsplit(':', 1)[1]}::SOCKET"
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--folder", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    args = parser.parse_args()
    print(f"frames/s, {args.frames} frames each; image files in {args.folder or tempfile.gettempdir()}")
    print(f"  {'model':<6} {'size':<12} {'bare loop':>10} {'bare→HDF5':>10} {'driver→HDF5':>12} {'ratios':>11} "
          f"{'MB/s driver':>12} {'end to end':>11}")
    for model, size in SIZES.items():
        root = Path(tempfile.mkdtemp(prefix="bench-camserver-", dir=args.folder))
        try:
            ready = ready_files(root, model)
            width, height = models.SIZES[model]
            bare = bare_loop(ready, args.frames, (height, width))
            bare_hdf5 = bare_loop(ready, args.frames, (height, width), Path(tempfile.gettempdir()) / "bench-bare.nxs")
            with WireServer(LinkingCamserver(root, ready), "stub") as stub:
                resource = f"TCPIP::127.0.0.1::{stub.serve_tcp()}::SOCKET"
                driver = driver_to_hdf5(CamserverDetector("det", options(model, root), resource), args.frames,
                                        Path(tempfile.gettempdir()) / f"bench-camserver-{model}.nxs")
            megabytes = driver * codec.tiff_size(height, width) / 1e6
            with served_simulator(root, model) as resource:
                end_to_end = driver_to_hdf5(CamserverDetector("det", options(model, root), resource),
                                            min(args.frames, 100), Path(tempfile.gettempdir()) / "bench-e2e.nxs")
            print(f"  {model:<6} {size:<12} {bare:10.0f} {bare_hdf5:10.0f} {driver:12.0f} {driver / bare:5.2f} "
                  f"{driver / bare_hdf5:5.2f} {megabytes:12.0f} {end_to_end:11.0f}")
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
