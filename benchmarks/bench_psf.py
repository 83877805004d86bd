"""Benchmark: arc PSF fit of a full 500-fiber camera on 1 and on N processes.

Renders a synthetic r-camera arc (4096 rows, 20 bundles of 25 fibers, the lamp
line list) through a known PSF, fits it from a perturbed nominal PSF and prints
wall and CPU times and the accuracy against the truth, for the default fit
(GHSIGX, GHSIGY, GH-2-0, GH-0-2, GH-1-1 with per-fiber width offsets) and, in the
same process, for the previous default (GHSIGX, GHSIGY, GH-1-1 only).

As in the simulator, the nominal PSF has no even Gauss-Hermite terms
(GH-2-0 = GH-0-2 = 0) unless ``--nominal-even`` is given.  The 1-minute load
average is printed with each fit: timings taken while other jobs run are slower.

Usage::

    python benchmarks/bench_psf.py [--nproc 1 2] [--nfiber 500] [--nominal-even]
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from psf_synth import arc_image, nominal_psf, true_psf  # noqa: E402

from desired.arcs import lamp_lines  # noqa: E402
from desired.psffit import FitOptions, fit_psf  # noqa: E402

VARIANTS = {
    "default": FitOptions(),
    "old 3-param": FitOptions(shape_params=("GHSIGX", "GHSIGY", "GH-1-1"), fiber_offsets=()),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--nfiber", type=int, default=500)
    parser.add_argument("--nominal-even", action="store_true",
                        help="keep the true GH-2-0/GH-0-2 in the nominal PSF")
    args = parser.parse_args()
    wave, inten = lamp_lines("r")
    truth = true_psf(args.nfiber)
    t0 = time.perf_counter()
    image, expected = arc_image(truth, wave, inten, seed=42)
    print(f"rendered {args.nfiber}-fiber arc {image.shape} with {wave.size} lines in {time.perf_counter() - t0:.1f} s")
    nominal = nominal_psf(truth)
    if not args.nominal_even:
        for name in ("GH-2-0", "GH-0-2"):
            nominal.params[name] = np.zeros_like(nominal.params[name])
    # warm the compiled kernels so that the first timing does not include compilation
    fit_psf(image, _first_bundle(nominal), wave, inten)
    lam = np.linspace(wave.min(), wave.max(), 200)
    on = (truth.y(0, lam) > 10) & (truth.y(0, lam) < truth.npix_y - 10)
    lam = lam[on]
    fib = np.arange(truth.nfiber)[:, None]
    disp = truth.y(fib, lam + 0.5) - truth.y(fib, lam - 0.5)
    for label, options in VARIANTS.items():
        results = {}
        for nproc in args.nproc:
            load = os.getloadavg()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            psf, _ = fit_psf(image, nominal, wave, inten, options=options, nproc=nproc)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            results[nproc] = psf
            dx = psf.x(fib, lam) - truth.x(fib, lam)
            dy = psf.y(fib, lam) - truth.y(fib, lam)
            sig = {}
            for k in ("GHSIGX", "GHSIGY"):
                err = psf.param(k, fib, lam) / truth.param(k, fib, lam) - 1
                sig[k] = (np.sqrt(np.mean(err ** 2)), np.abs(err).max())
            print(f"{label:12s} nproc={nproc}: wall {wall:.1f} s (main-process CPU {cpu:.1f} s, load {load:.1f}); "
                  f"x rms {np.sqrt(np.mean(dx ** 2)):.4f} px, y rms {np.sqrt(np.mean(dy ** 2)):.4f} px, "
                  f"wavelength rms {np.sqrt(np.mean((dy / disp) ** 2)):.4f} A, "
                  f"GHSIGX rms/max {sig['GHSIGX'][0]:.2%}/{sig['GHSIGX'][1]:.2%}, "
                  f"GHSIGY rms/max {sig['GHSIGY'][0]:.2%}/{sig['GHSIGY'][1]:.2%}, "
                  f"chi2/dof {psf.meta['CHI2PDF']:.3f}, flagged {psf.meta['NBADFIB']}", flush=True)
        keys = list(results)
        for k in keys[1:]:
            a, b = results[k], results[keys[0]]
            same = (np.array_equal(a.xcoef, b.xcoef) and np.array_equal(a.ycoef, b.ycoef)
                    and all(np.array_equal(a.params[p], b.params[p]) for p in a.params))
            print(f"{label:12s} nproc={k} identical to nproc={keys[0]}: {same}")


def _first_bundle(psf):
    """The first bundle of ``psf`` (kernel warm-up)."""
    from desired.psffit import subset_psf
    return subset_psf(psf, slice(0, min(25, psf.nfiber)))


if __name__ == "__main__":
    main()
