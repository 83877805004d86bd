"""Benchmark the spectro-perfectionism extraction on a full-size synthetic b frame.

Builds a 500-fiber b-camera-like Gauss-Hermite PSF (7.3 px pitch in a bundle,
bundle gaps, 0.55 A/px, sigma ~1.1 px, small Gauss-Hermite and tail terms), renders
random spectra on the 3600-5800 A x 0.8 A grid through it with Poisson and read
noise, and times ``desired.extract.extract_frame`` on 1 and 2 processes.  With
``--specter`` (and specter importable, e.g. ``PYTHONPATH=/tmp/specter_site``) the
same frame is extracted with ``specter.extract.ex2d`` from the same PSF file and
the flux difference in sigma units and the speed ratio are printed.

Usage::

    python benchmarks/bench_extract.py [--nbundle N] [--nproc 1,2] [--specter]
        [--specter-nbundle N] [--nsubbundles 5 --nwavestep 30 --wavepad 8]
        [--baseline /work/main/src/desired/extract.py --repeat 2]

With ``--baseline`` another version of ``extract.py`` is imported as a module and
timed on one core alternating with ours on the same frame (CPU seconds of the
process), and the two frames are compared.

Figures printed are measured, except lines labelled "extrapolated".
"""
import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

from desired.extract import extract_frame, single_threaded_blas, wavelength_grid
from desired.image import Image
from desired.psf import GaussHermitePSF

PITCH, GAP, BUNDLE = 7.3, 14.0, 25
READNOISE = 3.0


def full_psf(nfiber=500, ghdeg=2):
    """A full-size b-camera-like PSF (4096 x 4096)."""
    wmin, wmax = 3550.0, 5850.0
    fib = np.arange(nfiber)
    x0 = 60.0 + PITCH * fib + (GAP - PITCH) * (fib // BUNDLE)
    xcoef = np.zeros((nfiber, 3))
    xcoef[:, 0] = x0
    xcoef[:, 1] = 0.002 * (x0 - 2048)          # traces fan out slightly
    xcoef[:, 2] = 1.0
    a1 = (wmax - wmin) / (2 * 0.55)
    ycoef = np.zeros((nfiber, 3))
    ycoef[:, 1] = a1
    ycoef[:, 0] = 40.0 + a1 * (1 - 2 * (3600.0 - wmin) / (wmax - wmin)) + 2e-6 * (x0 - 2048) ** 2
    ycoef[:, 2] = 3.0
    rng = np.random.default_rng(1)
    params = {"GHSIGX": np.column_stack([1.05 + 0.05 * rng.random(nfiber), np.full(nfiber, 0.05)]),
              "GHSIGY": np.column_stack([1.12 + 0.05 * rng.random(nfiber), np.full(nfiber, -0.05)])}
    for i in range(ghdeg + 1):
        for j in range(ghdeg + 1):
            params[f"GH-{i}-{j}"] = np.zeros((nfiber, 2))
    params["GH-0-0"][:, 0] = 1.0
    params["GH-1-1"][:, 0] = 0.02
    params["GH-2-0"][:, 0] = 0.04
    params["GH-0-2"][:, 0] = -0.03
    params["TAILAMP"] = np.tile([0.002, 0.0], (nfiber, 1))
    params["TAILCORE"] = np.tile([2.0, 0.0], (nfiber, 1))
    # scales exactly 1: psf.py divides offsets by TAILXSCA/TAILYSCA, specter multiplies
    params["TAILXSCA"] = np.tile([1.0, 0.0], (nfiber, 1))
    params["TAILYSCA"] = np.tile([1.0, 0.0], (nfiber, 1))
    params["TAILINDE"] = np.tile([1.5, 0.0], (nfiber, 1))
    return GaussHermitePSF(xcoef, ycoef, wmin, wmax, params, ghdeg, ghdeg, hsizex=8, hsizey=5,
                           npix_x=4096, npix_y=4096, fibermin=0, meta={"CAMERA": "b0"})


def full_image(psf, wave, nfiber, seed=2, extra=20):
    """Render random continuum + line spectra of the first ``nfiber`` fibers; return (Image, truth).

    The spectra run ``extra`` bins beyond both ends of ``wave`` (as real spectra do);
    the returned truth is on ``wave``.
    """
    rng = np.random.default_rng(seed)
    dw = wave[1] - wave[0]
    wave = np.concatenate([wave[0] - dw * np.arange(extra, 0, -1), wave, wave[-1] + dw * np.arange(1, extra + 1)])
    truth = (rng.uniform(50, 400, (nfiber, 1))
             * (1 + 0.3 * np.sin((wave[None, :] - wave[0]) / rng.uniform(20, 60, (nfiber, 1)))))
    for _ in range(20):
        c = rng.uniform(wave[0], wave[-1], (nfiber, 1))
        truth += rng.uniform(200, 3000, (nfiber, 1)) * np.exp(-0.5 * ((wave[None, :] - c) / 0.5) ** 2)
    fib = np.repeat(np.arange(nfiber), wave.size)
    model = psf.project(fib, np.tile(wave, nfiber), (truth * 0.8).ravel())
    pix = rng.poisson(model).astype(float) + rng.normal(0, READNOISE, model.shape)
    ivar = 1.0 / (model + READNOISE ** 2)
    return Image(pix, ivar, readnoise=READNOISE, camera="b0"), truth[:, extra:truth.shape[1] - extra]


def print_pulls(label, flux, ivar, rdata, truth, edge):
    """Pulls ``(flux - R truth) sqrt(ivar)`` at the 10 end bins and in the interior."""
    from desired.resolution import apply_resolution
    chi = (flux - apply_resolution(rdata, truth)) * np.sqrt(ivar)
    for where, sel in (("10 bins at the ends", edge), ("interior", ~edge)):
        c = chi[:, sel][ivar[:, sel] > 0]
        print(f"  {label} pull vs its own R truth, {where}: mean {c.mean():+.4f} rms {c.std():.4f} "
              f"max |pull| {np.abs(c).max():.2f} n={c.size}")


def peak_rss_gib():
    """Peak resident memory of this process and its (finished) children, GiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 2 ** 20, kids / 2 ** 20


def cpu_seconds():
    """CPU time (user + system) of this process and its waited-for children, s."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_specter(image, psf, wave, nfib, nsub):
    """Extract the first ``nfib`` fibers with specter.extract.ex2d from our PSF file."""
    from specter.extract import ex2d
    from specter.psf import load_psf
    from desired.io.psf import write_psf
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "psf.fits")
        write_psf(path, psf, header={"CAMERA": "b0"})
        spsf = load_psf(path)
    ivar = image.good_ivar()
    flux, fivar = np.zeros((nfib, wave.size)), np.zeros((nfib, wave.size))
    rdata = None
    t0 = time.perf_counter()
    c0 = cpu_seconds()
    with single_threaded_blas():          # one core, as for ours
        for b in range(0, nfib, BUNDLE):
            n = min(BUNDLE, nfib - b)
            f, iv, R = ex2d(image.pix, ivar, spsf, b, n, wave, bundlesize=BUNDLE, nsubbundles=nsub,
                            wavesize=50)
            flux[b:b + n], fivar[b:b + n] = f, iv
            rdata = R if rdata is None else np.concatenate([rdata, R])
    print(f"specter CPU time: {cpu_seconds() - c0:.1f} s")
    return flux, fivar, rdata, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nbundle", type=int, default=20, help="bundles to extract (20 = the full frame)")
    p.add_argument("--nproc", default="1,2", help="comma-separated process counts to time")
    p.add_argument("--nsubbundles", type=int, default=5)
    p.add_argument("--nwavestep", type=int, default=30)
    p.add_argument("--wavepad", type=int, default=6)
    p.add_argument("--gpu", action="store_true",
                   help="also time the CuPy backend on the same frame (skipped without cupy and a CUDA device)")
    p.add_argument("--data-variance", action="store_true",
                   help="time the extraction with the image ivar as weights instead of the default model variance")
    p.add_argument("--specter", action="store_true", help="also run specter (must be importable)")
    p.add_argument("--baseline", help="path of another extract.py (e.g. main's) timed side by side on the "
                                      "same frame, alternating with ours; its frame is compared with ours")
    p.add_argument("--repeat", type=int, default=1, help="alternating repetitions of the --baseline timing")
    p.add_argument("--specter-nbundle", type=int, default=1, help="bundles to extract with specter")
    args = p.parse_args()

    wave = wavelength_grid("b0")
    psf = full_psf()
    nfib = BUNDLE * args.nbundle
    t0 = time.perf_counter()
    image, truth = full_image(psf, wave, nfib)
    print(f"rendered {nfib} fibers x {wave.size} wavelengths on 4096x4096 in {time.perf_counter() - t0:.1f} s")
    opts = dict(nsubbundles=args.nsubbundles, nwavestep=args.nwavestep, wavepad=args.wavepad)
    print(f"options: {opts}, weights: {'image ivar' if args.data_variance else 'model variance'}")
    # warm the numba cache outside the timing
    extract_frame(image, psf, wave[:60], fibers=(0, 5), **opts)
    frame = None
    load_before = os.getloadavg()[0]
    for nproc in [int(n) for n in args.nproc.split(",")]:
        t0 = time.perf_counter()
        c0 = cpu_seconds()
        frame = extract_frame(image, psf, wave, fibers=(0, nfib), nproc=nproc,
                              model_variance=not args.data_variance, **opts)
        dt = time.perf_counter() - t0
        dc = cpu_seconds() - c0
        label = "measured" if args.nbundle == 20 else f"{args.nbundle} bundles measured"
        print(f"desired extract nproc={nproc}: {dt:.1f} s wall, {dc:.1f} CPU s, for {nfib} fibers ({label}); "
              f"load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f}")
        load_before = os.getloadavg()[0]
        if args.nbundle != 20:
            print(f"  full 500-fiber frame, extrapolated: {dt * 20 / args.nbundle:.1f} s wall, "
                  f"{dc * 20 / args.nbundle:.1f} CPU s")
    own, kids = peak_rss_gib()
    print(f"peak RSS: main process {own:.2f} GiB, largest worker {kids:.2f} GiB")
    chi = ((frame.flux - frame.convolve(truth)) * np.sqrt(frame.ivar))[frame.ivar > 0]
    print(f"pull (flux - R truth) sqrt(ivar): mean {chi.mean():+.4f} rms {chi.std():.4f} n={chi.size}")
    if args.baseline:
        time_baseline(args.baseline, image, psf, wave, nfib, frame, args, opts)
    if args.gpu:
        time_gpu(image, psf, wave, nfib, frame, not args.data_variance, opts)

    if args.specter:
        try:
            import specter  # noqa: F401
        except ImportError:
            print("specter not importable: comparison skipped")
            return 0
        ns = BUNDLE * args.specter_nbundle
        sflux, sivar, srdata, st = run_specter(image, psf, wave, ns, nsub=6)   # DESI's production settings
        edge = np.zeros(wave.size, bool)
        edge[:10] = edge[-10:] = True
        # like for like first: the same pixel weights as specter (the image ivar), then the default
        for model_variance, what in ((False, "image-ivar weights, as specter"),
                                     (True, "model-variance weights, the default")):
            t0 = time.perf_counter()
            c0 = cpu_seconds()
            ours = extract_frame(image, psf, wave, fibers=(0, ns), nproc=1, model_variance=model_variance, **opts)
            ot = time.perf_counter() - t0
            print(f"desired ({what}): CPU time {cpu_seconds() - c0:.1f} s")
            print(f"  specter ex2d: {st:.1f} s for {ns} fibers; desired: {ot:.1f} s (1 core): "
                  f"speed ratio {st / ot:.1f}x")
            print(f"  full frame extrapolated: specter {st * 500 / ns:.0f} s, desired {ot * 500 / ns:.0f} s")
            for label, sel in (("all wavelengths", np.ones(wave.size, bool)), ("10 bins at the ends", edge),
                               ("interior", ~edge)):
                good = (sivar > 0) & (ours.ivar > 0) & sel[None, :]
                d = (ours.flux[good] - sflux[good]) * np.sqrt(ours.ivar[good])
                print(f"  flux difference / sigma, {label}: median |d| {np.median(np.abs(d)):.4f}, "
                      f"rms {d.std():.4f}, max |d| {np.abs(d).max():.3f}; "
                      f"ivar ratio median {np.median(ours.ivar[good] / sivar[good]):.4f}")
            print_pulls("desired", ours.flux, ours.ivar, ours.resolution_data, truth[:ns], edge)
        print_pulls("specter", sflux, sivar, srdata, truth[:ns], edge)
        rd = srdata.shape[1] // 2
        ours_r = ours.resolution_data[:, 5 - min(5, rd):6 + min(5, rd)]
        rdiff = np.abs(ours_r - srdata[:, rd - min(5, rd):rd + 1 + min(5, rd)])
        print(f"  resolution data |ours - specter| (common diagonals): max {rdiff.max():.4f}, "
              f"interior max {rdiff[:, :, ~edge].max():.4f}, interior median {np.median(rdiff[:, :, ~edge]):.2e}")
    return 0


def load_baseline(path):
    """Import another version of ``desired/extract.py`` as module ``desired._extract_baseline``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("desired._extract_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_baseline(path, image, psf, wave, nfib, frame, args, opts):
    """Time the baseline extract.py and ours again, alternating, on one core; compare the frames."""
    base = load_baseline(path)
    base.extract_frame(image, psf, wave[:60], fibers=(0, 5), **opts)          # numba cache outside the timing
    times = {"baseline": [], "ours": []}
    frames = {}
    for _ in range(args.repeat):
        for label, module in (("baseline", base), ("ours", sys.modules["desired.extract"])):
            t0, c0 = time.perf_counter(), cpu_seconds()
            frames[label] = module.extract_frame(image, psf, wave, fibers=(0, nfib), nproc=1,
                                                 model_variance=not args.data_variance, **opts)
            times[label].append((cpu_seconds() - c0, time.perf_counter() - t0))
            print(f"  {label:8s} nproc=1: {times[label][-1][0]:.1f} CPU s, {times[label][-1][1]:.1f} s wall "
                  f"(load {os.getloadavg()[0]:.1f})")
    best = {k: min(c for c, _ in v) for k, v in times.items()}
    print(f"side by side, best of {args.repeat}: baseline {best['baseline']:.1f} CPU s, ours {best['ours']:.1f} "
          f"CPU s for {nfib} fibers: ours / baseline = {best['ours'] / best['baseline']:.3f}; full 500-fiber frame"
          f"{'' if nfib == 500 else ' (extrapolated per bundle)'}: baseline {best['baseline'] * 500 / nfib:.1f}, "
          f"ours {best['ours'] * 500 / nfib:.1f} CPU s")
    b, o = frames["baseline"], frames["ours"]
    good = b.ivar > 0
    d = (o.flux - b.flux)[good] * np.sqrt(b.ivar[good])
    print(f"  ours - baseline: max |dflux| / sigma {np.abs(d).max():.2e}, max |divar / ivar| "
          f"{np.abs(o.ivar[good] / b.ivar[good] - 1).max():.2e}, max |dR| "
          f"{np.abs(o.resolution_data - b.resolution_data).max():.2e}, masks equal {np.array_equal(o.mask, b.mask)}")


def time_gpu(image, psf, wave, nfib, cpu_frame, model_variance, opts):
    """Time the CuPy backend on the frame and compare it with the CPU result (prints; skips without a GPU)."""
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
    except Exception as err:                     # no cupy or no device
        print(f"GPU backend skipped: {err.__class__.__name__}: {err}")
        return
    from desired import extract_gpu
    extract_gpu.extract_frame(image, psf, wave[:60], fibers=(0, 25), model_variance=model_variance, **opts)
    cupy.cuda.Device().synchronize()
    t0 = time.perf_counter()
    gpu = extract_gpu.extract_frame(image, psf, wave, fibers=(0, nfib), model_variance=model_variance, **opts)
    cupy.cuda.Device().synchronize()
    dt = time.perf_counter() - t0
    good = (cpu_frame.ivar > 0) & (gpu.ivar > 0)
    d = (gpu.flux - cpu_frame.flux)[good] * np.sqrt(cpu_frame.ivar[good])
    print(f"GPU ({cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}): {dt:.2f} s for {nfib} fibers; "
          f"max |GPU - CPU| / sigma {np.abs(d).max():.2e}")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
