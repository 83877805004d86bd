"""Benchmark: arc PSF fit of a full 500-fiber camera on 1 and on N processes.

Renders a synthetic r-camera arc (4096 rows, 20 bundles of 25 fibers, the lamp
line list) through a known PSF, fits it from a perturbed nominal PSF and prints
wall times and accuracy against the truth.

Usage::

    python benchmarks/bench_psf.py [--nproc 1 2] [--nfiber 500]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from psf_synth import arc_image, nominal_psf, true_psf  # noqa: E402

from desired.arcs import lamp_lines  # noqa: E402
from desired.psffit import fit_psf  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--nfiber", type=int, default=500)
    args = parser.parse_args()
    wave, inten = lamp_lines("r")
    truth = true_psf(args.nfiber)
    t0 = time.perf_counter()
    image, expected = arc_image(truth, wave, inten, seed=42)
    print(f"rendered {args.nfiber}-fiber arc {image.shape} with {wave.size} lines in {time.perf_counter() - t0:.1f} s")
    nominal = nominal_psf(truth)
    lam = np.linspace(wave.min(), wave.max(), 200)
    fib = np.arange(truth.nfiber)[:, None]
    disp = truth.y(fib, lam + 0.5) - truth.y(fib, lam - 0.5)
    results = {}
    for nproc in args.nproc:
        t0 = time.perf_counter()
        psf, _ = fit_psf(image, nominal, wave, inten, nproc=nproc)
        wall = time.perf_counter() - t0
        results[nproc] = psf
        dx = psf.x(fib, lam) - truth.x(fib, lam)
        dy = psf.y(fib, lam) - truth.y(fib, lam)
        sig = {k: np.abs(psf.param(k, fib, lam) / truth.param(k, fib, lam) - 1).max() for k in ("GHSIGX", "GHSIGY")}
        print(f"nproc={nproc}: wall {wall:.1f} s ({wall / 60:.2f} min); x rms {np.sqrt(np.mean(dx ** 2)):.4f} px, "
              f"y rms {np.sqrt(np.mean(dy ** 2)):.4f} px, wavelength rms {np.sqrt(np.mean((dy / disp) ** 2)):.4f} A, "
              f"max |GHSIGX-1| {sig['GHSIGX']:.4f}, max |GHSIGY-1| {sig['GHSIGY']:.4f}, "
              f"chi2/dof {psf.meta['CHI2PDF']:.3f}, flagged {psf.meta['NBADFIB']}")
    keys = list(results)
    for k in keys[1:]:
        same = np.array_equal(results[k].xcoef, results[keys[0]].xcoef) and \
            np.array_equal(results[k].ycoef, results[keys[0]].ycoef)
        print(f"nproc={k} identical to nproc={keys[0]}: {same}")


if __name__ == "__main__":
    main()
