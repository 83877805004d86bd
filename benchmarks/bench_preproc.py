"""Benchmark desired.preproc on a full-size r/z camera (4194 x 4256 raw -> 4128 x 4114).

Builds a synthetic raw frame with the real DESI section layout (7-column prescan,
64 overscan columns, 32 row-overscan rows per amp), 500 fiber traces with arc
lines and cosmic hits, then times :func:`desired.preproc.preproc_camera` (after a
warm-up call on a small frame so that numba compilation is excluded) and reports
the peak Python-heap memory of the call (tracemalloc) and the process RSS.

Usage::

    python benchmarks/bench_preproc.py [--repeat 3] [--no-cosmics]

Pin one core with e.g. ``taskset -c 0`` (the code is single-threaded).
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
from scipy.special import ndtr

from desired.io.raw import format_section
from desired.preproc import preproc_camera

GAINS = {"A": 1.52, "B": 1.61, "C": 1.47, "D": 1.70}
READNOISE = {"A": 2.6, "B": 3.1, "C": 2.3, "D": 3.4}
OFFSETS = {"A": 1012.3, "B": 987.6, "C": 1103.8, "D": 1051.1}


def _gauss(centres, sigma, n):
    edges = np.arange(n + 1) - 0.5
    return np.diff(ndtr((edges[None, :] - np.asarray(centres)[:, None]) / sigma), axis=1)


def make_camera(rng, hy=2064, hx=2057, prescan=7, noverscan=64, nrowover=32, nhits=3000):
    """Return (raw uint16, header, true electrons) for a DESI-sized camera."""
    ny, nx = 2 * hy, 2 * hx
    xs = np.linspace(10, nx - 11, 500)
    prof_x = _gauss(xs, 1.05, nx).sum(axis=0)
    lines = rng.uniform(10, ny - 10, 60)
    spec = 50.0 + (rng.uniform(1e3, 5e4, lines.size) @ _gauss(lines, 1.1, ny))
    true = 2.0 + spec[:, None] * prof_x[None, :]
    cr = np.zeros((ny, nx))
    cr[rng.integers(1, ny - 1, nhits), rng.integers(1, nx - 1, nhits)] = np.exp(rng.uniform(4, 8, nhits))
    electrons = rng.poisson(true + cr).astype(np.float64)
    nraw_y, nraw_x = 1 + hy + 2 * nrowover + hy + 1, prescan + hx + 2 * noverscan + hx + prescan
    raw = np.empty((nraw_y, nraw_x))
    header = {"CAMERA": "r0", "EXPTIME": 5.0, "EXPID": 1, "NIGHT": 20260101}
    rows = {"AB": slice(1, 1 + hy), "CD": slice(1 + hy + 2 * nrowover, 1 + hy + 2 * nrowover + hy)}
    for amp in "ABCD":
        half = "AB" if amp in "AB" else "CD"
        left = amp in "AC"
        dcols = slice(prescan, prescan + hx) if left else slice(prescan + hx + 2 * noverscan, nraw_x - prescan)
        ocols = (slice(prescan + hx, prescan + hx + noverscan) if left
                 else slice(prescan + hx + noverscan, prescan + hx + 2 * noverscan))
        qrows = slice(0, 1 + hy + nrowover) if half == "AB" else slice(1 + hy + nrowover, nraw_y)
        qcols = slice(0, prescan + hx + noverscan) if left else slice(prescan + hx + noverscan, nraw_x)
        ccd = (slice(0, hy) if half == "AB" else slice(hy, ny), slice(0, hx) if left else slice(hx, nx))
        g, rn = GAINS[amp], READNOISE[amp]
        shape = (qrows.stop - qrows.start, qcols.stop - qcols.start)
        raw[qrows, qcols] = OFFSETS[amp] + rng.normal(0, rn / g, shape)
        raw[rows[half], dcols] = OFFSETS[amp] + (electrons[ccd] + rng.normal(0, rn, (hy, hx))) / g
        header[f"DATASEC{amp}"] = format_section(rows[half], dcols)
        header[f"BIASSEC{amp}"] = format_section(rows[half], ocols)
        header[f"CCDSEC{amp}"] = format_section(*ccd)
    return np.clip(np.round(raw), 0, 65535).astype(np.uint16), header, true


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-cosmics", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    calib = {"camera": "r0", "dark_current": 0.0, "bad_columns": [], "dead_amplifiers": [],
             "amplifiers": {a: {"gain": GAINS[a], "readnoise": READNOISE[a], "saturation": 65000.0} for a in "ABCD"}}
    small, small_hdr, _ = make_camera(rng, hy=100, hx=80, nhits=20)
    preproc_camera(small, small_hdr, calib)                      # numba warm-up / cache load
    t0 = time.perf_counter()
    raw, header, true = make_camera(rng)
    print(f"synthetic raw {raw.shape} built in {time.perf_counter() - t0:.1f} s")
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        image = preproc_camera(raw, header, calib, cosmics=not args.no_cosmics)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    image = preproc_camera(raw, header, calib, cosmics=not args.no_cosmics)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    good = image.mask == 0
    chi = (image.pix - true)[good] * np.sqrt(image.ivar[good])
    print(f"preproc_camera on {image.pix.shape}: best {min(times):.2f} s, median {np.median(times):.2f} s "
          f"over {args.repeat} runs (cosmics {'off' if args.no_cosmics else 'on'})")
    print(f"peak traced memory of one call: {peak / 2**20:.0f} MiB; process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    print(f"chi = (pix - true) sqrt(ivar) over unmasked pixels: mean {chi.mean():+.4f}, rms {chi.std():.4f}; "
          f"COSMIC pixels {int(image.header.get('NCOSMIC', 0))}")
    for amp in "ABCD":
        print(f"  amp {amp}: overscan {image.header[f'OVERSCN{amp}']:.3f} (true {OFFSETS[amp]}) ADU, "
              f"read noise {image.header[f'OBSRDN{amp}']:.3f} (true {READNOISE[amp]}) e-")


if __name__ == "__main__":
    main()
