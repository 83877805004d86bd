"""Shared session fixtures: one simulated tiny night run through the pixel chain.

``chain_night`` simulates the ``tiny`` preset (camera b0, 25 fibers, cropped
rows; 3 arcs, 1 flat, 1 science) into a session temporary directory and runs
the real CLI steps in this process, in order::

    simulate -> preproc (every exposure) -> psf (every arc, from the nominal PSF)
    -> psfnight -> traceshift (sky-template mode, as the workflow rule)
    -> extract with the pipeline's shifted PSF (frame-*), with the true PSF moved
       by the simulator's injected trace shift (frame-truepsf-*), and with the
       psfnight PSF moved by the injected shift (frame-fitpsf-trueshift-*)

It returns a :class:`ChainNight` with the roots of the raw, calib, truth and
redux trees, so tests can compare any product with the simulator's truth
through :func:`desired.paths.findfile`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import fitsio
import pytest

from desired import paths
from desired.cli import main as desired_main
from desired.io.raw import read_raw_header

NIGHT = 20261124


@dataclasses.dataclass
class ChainNight:
    """Roots and exposure lists of a simulated night run through the chain."""

    root: Path
    night: int
    cameras: tuple
    arcs: list
    flats: list
    science: list

    def path(self, kind, **fields):
        """Return the absolute path of product ``kind`` (see :data:`desired.paths.PATTERNS`)."""
        tree = paths.PATTERNS[kind][0]
        fields.setdefault("night", self.night)
        return self.root / tree / paths.findfile(kind, **fields)

    def true_frame_path(self, expid, camera):
        """Frame extracted with the simulator's true (shifted) PSF."""
        return self.path("frame", expid=expid, camera=camera).with_name(
            f"frame-truepsf-{camera}-{expid:08d}.fits")



def open_mpi_mpiexec():
    """Path of Open MPI's ``mpiexec`` for the MPI tests; skips the test without mpi4py or Open MPI."""
    import shutil
    import subprocess
    pytest.importorskip("mpi4py")
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec")
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" not in version and "OpenRTE" not in version:
        pytest.skip("test written for Open MPI's mpiexec options")
    return mpiexec


def run_mpi_and_serial(args, outdir, timeout):
    """``python args --outfile outdir/mpi.fits --mpi`` under ``mpiexec -n 2``, then the serial run.

    Skips when Open MPI's mpiexec is missing or cannot start ranks here.  Returns the
    paths (mpi, serial) of the two outputs.
    """
    import subprocess
    import sys
    mpiexec = open_mpi_mpiexec()
    mpi, serial = Path(outdir) / "mpi.fits", Path(outdir) / "serial.fits"
    run = subprocess.run([mpiexec, "--allow-run-as-root", "--oversubscribe", "-n", "2", sys.executable] + args
                         + ["--outfile", str(mpi), "--mpi"], capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0 and not mpi.exists():
        pytest.skip(f"mpiexec could not run here: {run.stderr[-300:]}")
    subprocess.run([sys.executable] + args + ["--outfile", str(serial)], check=True, capture_output=True,
                   timeout=timeout)
    return mpi, serial

def run(argv):
    """Run one ``desired`` subcommand in this process; fail loudly on a non-zero status."""
    status = desired_main([str(a) for a in argv])
    if status not in (0, None):
        raise RuntimeError(f"desired {' '.join(map(str, argv))} returned {status}")


def true_shift(night, expid, camera):
    """The simulator's injected (dx, dy) trace shift of ``camera`` in ``expid``, pixels."""
    table = fitsio.read(night.path("truth", expid=expid), "TRACESHIFT")
    row = [i for i, cam in enumerate(table["CAMERA"]) if cam.strip().lower() == camera][0]
    return float(table["DX"][row]), float(table["DY"][row])


def simulate_night(root, preset="tiny", narc=3, nflat=1, nscience=1, seed=0, extra=()):
    """Simulate a night under ``root`` and return its :class:`ChainNight` (no processing)."""
    root = Path(root)
    run(["simulate", "--preset", preset, "--night", NIGHT, "--seed", seed,
         "--raw-dir", root / "raw", "--calib-dir", root / "calib", "--truth-dir", root / "truth",
         "--narc", narc, "--nflat", nflat, "--nscience", nscience, *extra])
    cameras = tuple(sorted(p.name[len("ccd-"):-len(".yaml")] for p in (root / "calib").glob("ccd-*.yaml")))
    arcs, flats, science = [], [], []
    for expdir in sorted((root / "raw" / str(NIGHT)).iterdir()):
        expid = int(expdir.name)
        obstype = str(read_raw_header(expdir / f"desi-{expdir.name}.fits.fz").get("OBSTYPE", ""))
        {"ARC": arcs, "FLAT": flats, "SCIENCE": science}.get(obstype.strip().upper(), []).append(expid)
    return ChainNight(root, NIGHT, cameras, arcs, flats, science)


def run_chain(night, true_psf_frames=True, extract_nproc=1):
    """Run preproc, psf, psfnight, traceshift and extract on ``night`` (a :class:`ChainNight`)."""
    for expid in night.arcs + night.flats + night.science:
        fibermap = night.path("raw_fibermap", expid=expid)
        for cam in night.cameras:
            out = night.path("preproc", expid=expid, camera=cam)
            out.parent.mkdir(parents=True, exist_ok=True)
            run(["preproc", "--infile", night.path("raw", expid=expid), "--camera", cam,
                 "--calib", night.path("calib_ccd", camera=cam), "--outfile", out,
                 *(["--fibermap", fibermap] if fibermap.exists() else [])])
    for cam in night.cameras:
        arc_psfs = []
        for expid in night.arcs:
            out = night.path("psf", expid=expid, camera=cam)
            out.parent.mkdir(parents=True, exist_ok=True)
            run(["psf", "--infile", night.path("preproc", expid=expid, camera=cam),
                 "--input-psf", night.path("calib_psf", camera=cam), "--outfile", out])
            arc_psfs.append(out)
        psfnight = night.path("psfnight", camera=cam)
        psfnight.parent.mkdir(parents=True, exist_ok=True)
        run(["psfnight", "--infiles", *arc_psfs, "--outfile", psfnight])
        wave = fitsio.read(str(night.path("truth_camera", expid=(night.flats + night.science)[0], camera=cam)),
                           "WAVELENGTH")
        # the tiny preset keeps only a window of the band's output grid: extract on that window
        grid = ["--wavelength", f"{wave[0]:.1f},{wave[-1]:.1f},{wave[1] - wave[0]:.1f}"]
        for expid in night.flats + night.science:
            shifted = night.path("shifted_psf", expid=expid, camera=cam)
            shifted.parent.mkdir(parents=True, exist_ok=True)
            # sky mode with the calibration tree's sky template, as the workflow's traceshift rule runs it
            run(["traceshift", "--image", night.path("preproc", expid=expid, camera=cam),
                 "--psf", psfnight, "--outfile", shifted,
                 "--sky-template", night.path("calib_sky_template")])
            run(["extract", "--image", night.path("preproc", expid=expid, camera=cam),
                 "--psf", shifted, "--outfile", night.path("frame", expid=expid, camera=cam),
                 "--nproc", extract_nproc, *grid])
            if true_psf_frames:
                from desired.io.psf import read_psf, write_psf
                dx, dy = true_shift(night, expid, cam)
                true_psf = read_psf(night.path("truth_psf", camera=cam)).shifted(dx, dy)
                true_file = shifted.with_name(f"truepsf-{cam}-{expid:08d}.fits")
                write_psf(true_file, true_psf)
                run(["extract", "--image", night.path("preproc", expid=expid, camera=cam),
                     "--psf", true_file, "--outfile", night.true_frame_path(expid, cam),
                     "--nproc", extract_nproc, *grid])
                fit_file = shifted.with_name(f"fitpsf-trueshift-{cam}-{expid:08d}.fits")
                write_psf(fit_file, read_psf(psfnight).shifted(dx, dy))
                run(["extract", "--image", night.path("preproc", expid=expid, camera=cam),
                     "--psf", fit_file, "--outfile",
                     night.path("frame", expid=expid, camera=cam).with_name(
                         f"frame-fitpsf-trueshift-{cam}-{expid:08d}.fits"),
                     "--nproc", extract_nproc, *grid])
    return night


#: optional real DESI calibration files beside the checkout (tests using them skip without it)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def real_specex_psf():
    """A real DESI specex PSF (r0, GH degree 6) from ../shared/data; skips when it is absent."""
    from desired.io.psf import read_psf
    path = SHARED_DATA / "psf-gausshermite-r0-00051060.fits"
    if not path.exists():
        pytest.skip("../shared/data is not available")
    return read_psf(str(path))


@pytest.fixture(scope="session")
def chain_night(tmp_path_factory):
    """A tiny simulated night (b0) run through the whole pixel chain (about a minute)."""
    root = tmp_path_factory.mktemp("chain_night")
    # three times the nominal cosmic-ray rate, so that the single small science frame holds
    # enough bright hits to measure the detection rate
    night = simulate_night(root, preset="tiny", narc=3, nflat=1, nscience=1, extra=("--cosmic-rate", 3.0))
    return run_chain(night)
