"""The pixel chain on a simulated mini night (b0, r0, z0; 50 fibers; full rows), against truth.

Complements ``test_chain_truth.py`` (whose tiny b0 window, 4000-4420 A, holds no
night-sky feature): here the science frame covers every band, so the trace shift
along the wavelength direction is measured the way the workflow measures it
(the calibration tree's sky template fitted to every fiber) and the frame is
extracted with the pipeline's own PSF — psfnight from the simulated arcs moved by
the measured shift — which is issue 7's fitted-PSF criterion.
"""
from __future__ import annotations

import numpy as np
import pytest

from desired.io.psf import read_psf

from conftest import run_chain, simulate_night, true_shift
from test_chain_truth import arc_covered_grid, frame_pulls, truth_hdu

CAMERAS = ("b0", "r0", "z0")


@pytest.fixture(scope="module")
def mini_night(tmp_path_factory):
    """Mini night with 2 arcs and 1 science exposure through preproc, psf, psfnight, traceshift, extract.

    The science frame is also extracted with the simulator's true PSF moved by the
    injected shift (``frame-truepsf-*``).
    """
    night = simulate_night(tmp_path_factory.mktemp("mini_night"), preset="mini", narc=2, nflat=0, nscience=1,
                           extra=("--nproc", 2))
    return run_chain(night, true_psf_frames=True, extract_nproc=2)


@pytest.mark.parametrize("camera", CAMERAS)
def test_traceshift_recovers_injected_shift_on_science(mini_night, camera):
    """Shifted PSF minus psfnight against the simulator's injected (dx, dy), over the output grid."""
    night_psf = read_psf(mini_night.path("psfnight", camera=camera))
    expid = mini_night.science[0]
    dx_true, dy_true = true_shift(mini_night, expid, camera)
    shifted = read_psf(mini_night.path("shifted_psf", expid=expid, camera=camera))
    assert shifted.meta["TRLINES"] == "template"
    wave = truth_hdu(mini_night, expid, "WAVELENGTH", camera).astype(np.float64)
    fibers = range(shifted.nfiber)
    dx = np.array([shifted.x(f, wave) - night_psf.x(f, wave) for f in fibers])
    dy = np.array([shifted.y(f, wave) - night_psf.y(f, wave) for f in fibers])
    assert np.sqrt(np.mean((dx - dx_true) ** 2)) <= 0.02, (dx_true, dx.mean())
    assert np.sqrt(np.mean((dy - dy_true) ** 2)) <= 0.02, (dy_true, dy.mean())


@pytest.mark.parametrize("camera", CAMERAS)
def test_science_extraction_with_pipeline_psf(mini_night, camera):
    """(flux - R . true flux) * sqrt(ivar) with the pipeline's shifted psfnight: rms within 1 +- 0.1.

    Measured over the wavelengths between the first and last arc line on the CCD (the
    PSF's fitted range; beyond it the traces are extrapolated).
    """
    expid = mini_night.science[0]
    grid = arc_covered_grid(mini_night, camera)
    chi = frame_pulls(mini_night.path("frame", expid=expid, camera=camera), mini_night, expid, camera,
                      wave_range=(grid[0], grid[-1]))
    assert chi.size > 0.8 * 50 * grid.size
    assert abs(chi.std() - 1) <= 0.1, (camera, chi.mean(), chi.std())


@pytest.mark.parametrize("camera", CAMERAS)
def test_science_extraction_with_true_psf(mini_night, camera):
    """With the true PSF: pulls mean within +-0.02 and rms within 1 +- 0.05 over the whole grid (issue 7)."""
    expid = mini_night.science[0]
    chi = frame_pulls(mini_night.true_frame_path(expid, camera), mini_night, expid, camera)
    assert abs(chi.mean()) <= 0.02, (camera, chi.mean(), chi.std())
    assert abs(chi.std() - 1) <= 0.05, (camera, chi.mean(), chi.std())
