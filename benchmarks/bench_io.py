"""Time desired.io writers/readers on full-size products and print file sizes.

Usage: python benchmarks/bench_io.py [outdir]
Sizes follow desi-datamodel.md: a z-camera frame (500 x 2881, 11 diagonals), an
r/z preproc image (4128 x 4114) and a 3-band coadd of 500 targets.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from desired.fibermap import empty_fibermap
from desired.frame import Frame
from desired.image import Image
from desired.io.frame import read_frame, write_frame
from desired.io.image import read_image, write_image
from desired.io.spectra import read_spectra, write_spectra
from desired.spectra import Spectra


def timed(label, path, write, read):
    t0 = time.perf_counter()
    write()
    t1 = time.perf_counter()
    read()
    t2 = time.perf_counter()
    print(f"{label:10s} write {t1 - t0:6.2f} s  read {t2 - t1:6.2f} s  size {os.path.getsize(path) / 2**20:7.1f} MiB")


def main(outdir):
    rng = np.random.default_rng(0)
    nspec, nwave = 500, 2881
    wave = 7520.0 + 0.8 * np.arange(nwave)
    res = np.tile(np.exp(-0.5 * (np.arange(11) - 5.0) ** 2)[None, :, None], (nspec, 1, nwave))
    res /= res.sum(axis=1, keepdims=True)
    frame = Frame(wave, rng.normal(10, 3, (nspec, nwave)), rng.uniform(0.5, 2, (nspec, nwave)),
                  resolution_data=res, fibermap=empty_fibermap(nspec, 0), chi2pix=np.ones((nspec, nwave)),
                  header={"CAMERA": "z0", "NIGHT": 20250101, "EXPID": 1, "TILEID": 1})
    path = os.path.join(outdir, "frame-z0-00000001.fits")
    timed("frame", path, lambda: write_frame(path, frame), lambda: read_frame(path))

    ny, nx = 4128, 4114
    mask = np.where(rng.uniform(size=(ny, nx)) < 0.001, 16, 0)
    image = Image(rng.normal(0, 3, (ny, nx)), np.full((ny, nx), 0.1), mask=mask, readnoise=3.0, camera="z0")
    path = os.path.join(outdir, "preproc-z0-00000001.fits")
    timed("preproc", path, lambda: write_image(path, image), lambda: read_image(path))

    grids = {"b": (3600.0, 2751), "r": (5760.0, 2326), "z": (7520.0, 2881)}
    waves = {b: w0 + 0.8 * np.arange(n) for b, (w0, n) in grids.items()}
    fm = empty_fibermap(nspec, 0)
    spec = Spectra(list(grids), waves, {b: rng.normal(size=(nspec, w.size)) for b, w in waves.items()},
                   {b: np.ones((nspec, w.size)) for b, w in waves.items()},
                   resolution_data={b: res[:, :, :w.size] for b, w in waves.items()}, fibermap=fm,
                   exp_fibermap=fm[["TARGETID", "FIBER"]])
    path = os.path.join(outdir, "coadd-main-dark-1.fits")
    timed("coadd", path, lambda: write_spectra(path, spec), lambda: read_spectra(path))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
