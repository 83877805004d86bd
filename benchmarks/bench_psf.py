"""Benchmark: arc PSF fit of a full 500-fiber camera on 1 and on N processes.

Renders a synthetic r-camera arc (4096 rows, 20 bundles of 25 fibers, the lamp
line list) through a known PSF, fits it from a perturbed nominal PSF and prints
wall and CPU times and the accuracy against the truth, for the default fit
(GHSIGX, GHSIGY, GH-2-0, GH-0-2, GH-1-1 with per-fiber width offsets) and, in the
same process, for the previous default (GHSIGX, GHSIGY, GH-1-1 only).

As in the simulator, the nominal PSF has no even Gauss-Hermite terms
(GH-2-0 = GH-0-2 = 0) unless ``--nominal-even`` is given.  The 1-minute load
average is printed with each fit: timings taken while other jobs run are slower.

With ``--mini``, instead simulates the default mini night's arc (b0, r0, z0; 50
fibers) with ``desired simulate``, preprocesses it with ``desired preproc`` and fits
each camera from the calibration tree's nominal PSF, printing CPU time, GHSIGX /
GHSIGY errors against the simulator's true PSF over the arc-covered range, trace
errors, and the distribution of the arc-line chi2/dof
(:func:`desired.psffit.line_profile_chi2`) with the true and the fitted PSFs.

Usage::

    python benchmarks/bench_psf.py [--nproc 1 2] [--nfiber 500] [--nominal-even]
    python benchmarks/bench_psf.py --mini
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
from desired.psffit import FitOptions, fit_psf, line_profile_chi2  # noqa: E402

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
    parser.add_argument("--mini", action="store_true", help="fit the simulated mini night's arcs instead")
    args = parser.parse_args()
    if args.mini:
        return bench_mini()
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


def bench_mini(night=20261124):
    """Simulate, preprocess and fit the mini night's arc; print figures against the truth."""
    import tempfile

    import fitsio

    from desired import paths
    from desired.cli import main as desired_main
    from desired.io.image import read_image
    from desired.io.psf import read_psf

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def path(kind, **fields):
            return root / paths.PATTERNS[kind][0] / paths.findfile(kind, night=night, **fields)

        desired_main(["simulate", "--preset", "mini", "--night", str(night), "--raw-dir", str(root / "raw"),
                      "--calib-dir", str(root / "calib"), "--truth-dir", str(root / "truth"),
                      "--narc", "1", "--nflat", "0", "--nscience", "0"])
        expid = int(next((root / "raw" / str(night)).iterdir()).name)
        for cam in ("b0", "r0", "z0"):
            out = path("preproc", expid=expid, camera=cam)
            out.parent.mkdir(parents=True, exist_ok=True)
            desired_main(["preproc", "--infile", str(path("raw", expid=expid)), "--camera", cam,
                          "--calib", str(path("calib_ccd", camera=cam)), "--outfile", str(out)])
            image = read_image(out)
            nominal = read_psf(path("calib_psf", camera=cam))
            true = read_psf(path("truth_psf", camera=cam))
            arcs = fitsio.read(str(path("truth_camera", expid=expid, camera=cam)), "ARCLINES")
            wave, inten = lamp_lines(cam[0])
            rows = true.y(0, arcs["WAVE"])
            covered = arcs["WAVE"][(rows > 10) & (rows < true.npix_y - 10)]
            lam = np.linspace(covered.min(), covered.max(), 400)[None, :]
            fib = np.arange(true.nfiber)[:, None]
            fit_psf(image, nominal, wave, inten)                 # warm-up (compiled kernels)
            fitted = {"true PSF": true}
            for label, options in VARIANTS.items():
                load = os.getloadavg()[0]
                c0 = time.process_time()
                psf, _ = fit_psf(image, nominal, wave, inten, options=options)
                cpu = time.process_time() - c0
                fitted[label] = psf
                err = {k: psf.param(k, fib, lam) / true.param(k, fib, lam) - 1 for k in ("GHSIGX", "GHSIGY")}
                dx, dy = psf.x(fib, lam) - true.x(fib, lam), psf.y(fib, lam) - true.y(fib, lam)
                print(f"{cam} {label:12s} CPU {cpu:.2f} s (load {load:.1f}); GHSIGX rms/max "
                      f"{np.sqrt(np.mean(err['GHSIGX'] ** 2)):.2%}/{np.abs(err['GHSIGX']).max():.2%}, GHSIGY "
                      f"{np.sqrt(np.mean(err['GHSIGY'] ** 2)):.2%}/{np.abs(err['GHSIGY']).max():.2%}; x rms "
                      f"{np.sqrt(np.mean(dx ** 2)):.4f} px, y rms {np.sqrt(np.mean(dy ** 2)):.4f} px", flush=True)
            for label, psf in fitted.items():
                spots = line_profile_chi2(image, psf, arcs["WAVE"], arcs["ELECTRONS"])
                ratio = spots["chi2"] / spots["ndof"]
                quantiles = "/".join(f"{v:.2f}" for v in np.percentile(ratio, [10, 25, 50, 75, 90]))
                print(f"{cam} {label:12s} arc-line chi2/dof: {ratio.size} spots, p10/25/50/75/90 {quantiles}, "
                      f"pooled {spots['chi2'].sum() / spots['ndof'].sum():.3f}", flush=True)


def _first_bundle(psf):
    """The first bundle of ``psf`` (kernel warm-up)."""
    from desired.psffit import subset_psf
    return subset_psf(psf, slice(0, min(25, psf.nfiber)))


if __name__ == "__main__":
    main()
