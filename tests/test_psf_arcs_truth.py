"""Arc PSF fits of a simulated night against the simulator's true PSF (issue 6).

Uses the session fixture ``chain_night`` (conftest: tiny b0 night, 25 fibers,
rows 677-1420, 3 arcs fitted from the nominal PSF by ``desired psf``, combined by
``desired psfnight``).  Two acceptance numbers of issue 6 are measured:

* core widths: GHSIGX and GHSIGY of every arc PSF and of the night PSF within
  2 % (rms over fibers and the arc-covered wavelengths) of the true PSF, and the
  spot second-moment widths too;
* line profiles: for every well-exposed, unblended arc line spot, the chi2 of
  the preproc pixels against the PSF's spot (amplitude and local background
  fitted, preproc ivar) has a median chi2/dof <= 1.2.  The same statistic with
  the true PSF calibrates it (~1), and a PSF 3 % too wide fails it.
"""
from __future__ import annotations

import fitsio
import numpy as np

from desired.io.image import read_image
from desired.io.psf import read_psf
from desired.psffit import line_profile_chi2

CAMERA = "b0"


def arc_lines(night, expid, camera=CAMERA):
    """True lamp lines of an arc exposure: wavelengths (A) and electrons."""
    table = fitsio.read(str(night.path("truth_camera", expid=expid, camera=camera)), "ARCLINES")
    return table["WAVE"].astype(np.float64), table["ELECTRONS"].astype(np.float64)


def fitted_range(night, true, camera=CAMERA):
    """Wavelength grid between the first and last true arc line on the CCD window."""
    wave, _ = arc_lines(night, night.arcs[0], camera)
    rows = true.y(np.arange(true.nfiber)[:, None], wave[None, :])
    on = ((rows > true.hsizey) & (rows < true.npix_y - 1 - true.hsizey)).all(axis=0)
    return np.linspace(wave[on].min(), wave[on].max(), 200)


def second_moment_widths(psf, fibers, wave):
    """Spot widths (sqrt of the second moments about the trace), pixels; arrays (n,)."""
    xlo, ylo, st = psf.spots(fibers, wave)
    xx = xlo[:, None] + np.arange(st.shape[2])[None, :] - psf.x(fibers, wave)[:, None]
    yy = ylo[:, None] + np.arange(st.shape[1])[None, :] - psf.y(fibers, wave)[:, None]
    return np.sqrt(np.einsum("nyx,nx->n", st, xx ** 2)), np.sqrt(np.einsum("nyx,ny->n", st, yy ** 2))


def fitted_psfs(night):
    """(label, PSF) of every arc fit and the night PSF."""
    out = [(f"arc {e}", read_psf(night.path("psf", expid=e, camera=CAMERA))) for e in night.arcs]
    return out + [("psfnight", read_psf(night.path("psfnight", camera=CAMERA)))]


def rms(a):
    return float(np.sqrt(np.mean(np.square(a))))


def test_gauss_hermite_widths_within_two_percent_of_truth(chain_night):
    true = read_psf(chain_night.path("truth_psf", camera=CAMERA))
    wave = fitted_range(chain_night, true)
    fibers = np.arange(true.nfiber)[:, None]
    for label, fit in fitted_psfs(chain_night):
        for name in ("GHSIGX", "GHSIGY"):
            err = fit.param(name, fibers, wave[None, :]) / true.param(name, fibers, wave[None, :]) - 1
            assert rms(err) <= 0.02, (label, name, rms(err))
            assert np.abs(err).max() <= 0.04, (label, name, np.abs(err).max())


def test_spot_second_moments_within_two_percent_of_truth(chain_night):
    true = read_psf(chain_night.path("truth_psf", camera=CAMERA))
    wave = fitted_range(chain_night, true)[::10]
    fib = np.repeat(np.arange(true.nfiber), wave.size)
    lam = np.tile(wave, true.nfiber)
    tx, ty = second_moment_widths(true, fib, lam)
    for label, fit in fitted_psfs(chain_night):
        fx, fy = second_moment_widths(fit, fib, lam)
        assert rms(fx / tx - 1) <= 0.02, (label, rms(fx / tx - 1))
        assert rms(fy / ty - 1) <= 0.02, (label, rms(fy / ty - 1))


def chi2_statistics(night, expid, psf):
    """Per-spot chi2 table of an arc, its median chi2/dof and its pooled chi2/dof (sum chi2 / sum dof)."""
    image = read_image(night.path("preproc", expid=expid, camera=CAMERA))
    wave, electrons = arc_lines(night, expid)
    spots = line_profile_chi2(image, psf, wave, electrons)
    median = float(np.median(spots["chi2"] / spots["ndof"]))
    return spots, median, float(spots["chi2"].sum() / spots["ndof"].sum())


def _wider(psf, factor):
    """A copy of ``psf`` with GHSIGX and GHSIGY scaled by ``factor``."""
    out = psf.copy()
    for name in ("GHSIGX", "GHSIGY"):
        out.params[name] = out.params[name] * factor
    return out


def test_arc_line_profiles_chi2_per_dof(chain_night):
    """Median and pooled chi2/dof of the arc spots <= 1.2 with the arc and night PSFs.

    The median is the acceptance number; the pooled value weighs the bright spots,
    where a shape error shows first (a 3 % width error leaves the median near 1.2
    but triples the pooled value).
    """
    true = read_psf(chain_night.path("truth_psf", camera=CAMERA))
    night_psf = read_psf(chain_night.path("psfnight", camera=CAMERA))
    for expid in chain_night.arcs:
        arc_psf = read_psf(chain_night.path("psf", expid=expid, camera=CAMERA))
        spots, med_true, pooled_true = chi2_statistics(chain_night, expid, true)
        assert spots["chi2"].size >= 100, "too few well-exposed unblended spots to measure"
        # the statistic is calibrated with the simulator's PSF (measured 0.90-0.94: the
        # preproc variance model is slightly conservative)
        assert 0.8 <= med_true <= 1.1 and 0.8 <= pooled_true <= 1.1, (expid, med_true, pooled_true)
        for label, psf in (("arc", arc_psf), ("psfnight", night_psf)):
            fitted, med, pooled = chi2_statistics(chain_night, expid, psf)
            # the spots selected (bright, unblended at the PSF's positions) are nearly the same
            assert fitted["chi2"].size >= 0.9 * spots["chi2"].size, (expid, label)
            assert med <= 1.2, (expid, label, med)
            assert pooled <= 1.2, (expid, label, pooled)
        # stricter, for the arc's own fit: its bright spots are reproduced as well as by the
        # true PSF (the old fit, even Gauss-Hermite terms held nominal, was 0.18 above).  The
        # night PSF is not held to it: psfnight's per-coefficient median of the traces is
        # up to 0.07 above on this window (a mean of the arc PSFs is not)
        _, _, pooled_arc = chi2_statistics(chain_night, expid, arc_psf)
        assert pooled_arc <= pooled_true + 0.05, (expid, pooled_arc, pooled_true)
        # and it can fail: spots 3 % too wide
        _, _, pooled_wide = chi2_statistics(chain_night, expid, _wider(true, 1.03))
        assert pooled_wide > 1.5, (expid, pooled_wide)


def test_fit_chi2_keyword_near_one(chain_night):
    """The CHI2PDF the fit writes (isolated spots' boxes, its own model) is near 1 too."""
    for expid in chain_night.arcs:
        arc_psf = read_psf(chain_night.path("psf", expid=expid, camera=CAMERA))
        assert 0.8 <= arc_psf.meta["CHI2PDF"] <= 1.2, (expid, arc_psf.meta["CHI2PDF"])
