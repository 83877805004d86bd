"""True optics of each simulated camera: traces, wavelength solution and PSF.

Geometry (full CCD, fiber ``i`` of a petal, ``t`` = reduced wavelength over the
CCD coverage in [-1, 1], ``s`` = reduced slit position of the fiber in [-1, 1])::

    x0_i   = FIRST_FIBER_X + 7.27 i + 10.3 (i // 25) + jitter(0.05 px)
    x(λ)   = x0_i + A s (t² - 1/3) + B s t + 0.3 s t³           (A = 14 px b, 7 px r/z)
    y(λ)   = k [(λ - λ_lo) + a H (t² - 1)/2] - 3 s² + 0.8 s     (dispersion integral)

``dy/dλ = k (1 + a t)`` reproduces DESI's measured blue/red-end dispersion, ``k``
makes the CCD coverage span all rows, edge fibers bow outwards (curvature) and
lines of constant wavelength bend ("smile").  Both are written exactly as
degree-6 Legendre series (the polynomials have degree ≤ 3).

Spot model: :class:`desired.psf.GaussHermitePSF` with GHDEGX = GHDEGY = 2.
Core widths GHSIGX ~1.03-1.12 px and GHSIGY rising to the red (b 1.10-1.20,
r 1.05-1.30, z 1.25-1.40 px) with a quadratic dependence on slit position;
GH-2-0 ~ 0.02-0.03, GH-0-2 ~ 0.03, GH-1-1 up to ±0.05 at the CCD corners
(tilted spots), GH-2-2 = -0.005; odd terms GH-1-0/GH-0-1 are zero so the spot
centroid is the trace.  A faint power-law tail (TAILAMP 3e-4, ~0.25% of the flux
inside the 17 x 11 stamp).

The *nominal* PSF written to the calibration tree (the PSF fit's starting point)
has the traces offset by 0.5-1.5 px in x, the wavelength solution off by 2-4 Å,
constant widths (1.1, 1.2 px) and no Gauss-Hermite or tail terms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.polynomial import legendre

from ..psf import GaussHermitePSF, render_spots
from . import instrument as ins

GHDEG = 2
TRACE_NCOEF = 7
PARAM_NCOEF = 3
#: Legendre domain margin beyond the CCD wavelength coverage, Angstrom
DOMAIN_MARGIN = 40.0
_SIGY = {"b": (1.10, 1.20), "r": (1.05, 1.30), "z": (1.25, 1.40)}
_SIGX = {"b": 1.03, "r": 1.04, "z": 1.08}
_CURVATURE = {"b": 14.0, "r": 7.0, "z": 7.0}


@dataclass
class CameraOptics:
    """Optics of one simulated camera.

    Attributes
    ----------
    camera : str
    psf : GaussHermitePSF
        True PSF, coordinates of the (cropped) trimmed image.
    nominal : GaussHermitePSF
        Perturbed nominal PSF for the calibration tree.
    row0, col0 : int
        Position of the cropped image's first pixel on the full CCD.
    shape : (int, int)
        Trimmed (cropped) image shape (rows, cols).
    """

    camera: str
    psf: GaussHermitePSF
    nominal: GaussHermitePSF
    row0: int
    col0: int
    shape: tuple


def _full_traces(band, fibers, rng):
    """Analytic full-CCD trace functions for petal fibers ``fibers``; returns x(f, λ), y(f, λ) callables."""
    fibers = np.asarray(fibers)
    lo, hi = ins.CCD_WAVE[band]
    ny, nx = ins.CCD_SHAPE[band]
    lc, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    ratio = ins.DISPERSION[band][0] / ins.DISPERSION[band][1]
    a = (ratio - 1) / (ratio + 1)
    k = (ny - 1) / (2 * half)
    allf = np.arange(ins.FIBERS_PER_PETAL)
    x0_all = ins.FIRST_FIBER_X[band] + ins.FIBER_PITCH * allf + ins.BUNDLE_GAP * (allf // ins.FIBERS_PER_BUNDLE)
    jitter = rng.normal(0.0, 0.05, allf.size)
    x0_all = x0_all + jitter
    xmid, xhalf = 0.5 * (x0_all[0] + x0_all[-1]), 0.5 * (x0_all[-1] - x0_all[0])
    x0 = x0_all[fibers]
    s = (x0 - xmid) / xhalf
    acurv = _CURVATURE[band]

    def xfun(idx, wave):
        t = (np.asarray(wave) - lc) / half
        ss = s[idx]
        return x0[idx] + acurv * ss * (t ** 2 - 1.0 / 3.0) + 4.0 * ss * t + 0.3 * ss * t ** 3

    def yfun(idx, wave):
        wave = np.asarray(wave)
        t = (wave - lc) / half
        ss = s[idx]
        return k * ((wave - lo) + a * half * (t ** 2 - 1.0) / 2.0) - 3.0 * ss ** 2 + 0.8 * ss

    return xfun, yfun, s


def _legfit_rows(fun, nfiber, wavemin, wavemax, ncoef):
    """Legendre coefficients [nfiber, ncoef] of ``fun(fiber_index, wave)`` over the domain."""
    u = np.cos(np.pi * (np.arange(4 * ncoef) + 0.5) / (4 * ncoef))
    wave = wavemin + 0.5 * (u + 1.0) * (wavemax - wavemin)
    vals = np.array([fun(np.full(u.size, i), wave) for i in range(nfiber)])     # [nfiber, nu]
    return legendre.legfit(u, vals.T, ncoef - 1).T


def build_camera_optics(camera, preset, seed):
    """Build the true and nominal PSF of one camera.

    Parameters
    ----------
    camera : str
        ``b0`` ... ``z9``.
    preset : desired.sim.instrument.Preset
    seed : int
        Night seed; optics are drawn from ``SeedSequence([seed, 0, camera_index, 1])``
        so every exposure of the night (and every worker) sees the same optics.

    Returns
    -------
    CameraOptics
    """
    band, spectro = camera[0], int(camera[1:])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, ins.camera_index(camera), 1]))
    fibers = np.asarray(preset.fibers)
    nfib = fibers.size
    xfun, yfun, s = _full_traces(band, fibers, rng)
    lo, hi = ins.CCD_WAVE[band]
    wavemin, wavemax = lo - DOMAIN_MARGIN, hi + DOMAIN_MARGIN
    ny_full, nx_full = ins.CCD_SHAPE[band]

    # crop
    grid = np.linspace(lo, hi, 200)
    idx = np.arange(nfib)
    row0, ny = 0, ny_full
    window = preset.window(band)
    if window is not None:
        yw = np.array([[yfun(np.full(2, i), np.array(window) + np.array([-12.0, 12.0]))] for i in idx]).reshape(nfib, 2)
        row0 = max(0, int(np.floor(yw[:, 0].min())))
        row1 = min(ny_full, int(np.ceil(yw[:, 1].max())) + 1)
        ny = row1 - row0
        ny += ny % 2
    col0, nx = 0, nx_full
    if preset.crop_columns:
        xs = np.array([xfun(np.full(grid.size, i), grid) for i in idx])
        col0 = max(0, int(np.floor(xs.min())) - preset.column_margin)
        col1 = min(nx_full, int(np.ceil(xs.max())) + preset.column_margin + 1)
        nx = col1 - col0
        nx += nx % 2

    xcoef = _legfit_rows(lambda i, w: xfun(i, w) - col0, nfib, wavemin, wavemax, TRACE_NCOEF)
    ycoef = _legfit_rows(lambda i, w: yfun(i, w) - row0, nfib, wavemin, wavemax, TRACE_NCOEF)

    # spot parameters, Legendre in wavelength over the same domain
    sy_blue, sy_red = _SIGY[band]
    fiber_dsx = rng.normal(0.0, 0.01, nfib)
    fiber_dsy = rng.normal(0.0, 0.01, nfib)
    lc, half = 0.5 * (lo + hi), 0.5 * (hi - lo)

    def tof(w):
        return (np.asarray(w) - lc) / half

    funcs = {
        "GHSIGX": lambda i, w: _SIGX[band] + 0.06 * s[i] ** 2 + 0.02 * tof(w) + fiber_dsx[i],
        "GHSIGY": lambda i, w: sy_blue + (sy_red - sy_blue) * (tof(w) + 1) / 2 + 0.04 * s[i] ** 2 + fiber_dsy[i],
        "GH-0-0": lambda i, w: np.ones_like(tof(w)),
        "GH-2-0": lambda i, w: 0.02 + 0.01 * s[i] ** 2 + 0.0 * tof(w),
        "GH-0-2": lambda i, w: 0.03 + 0.005 * tof(w) + 0.0 * s[i],
        "GH-1-1": lambda i, w: 0.05 * s[i] * tof(w),
        "GH-2-2": lambda i, w: -0.005 + 0.0 * tof(w) + 0.0 * s[i],
    }
    params = {}
    for name, fun in funcs.items():
        params[name] = _legfit_rows(fun, nfib, wavemin, wavemax, PARAM_NCOEF)
    for i in range(GHDEG + 1):
        for j in range(GHDEG + 1):
            params.setdefault(f"GH-{i}-{j}", np.zeros((nfib, PARAM_NCOEF)))
    tail = {"TAILAMP": 3e-4, "TAILCORE": 1.0, "TAILXSCA": 1.0, "TAILYSCA": 1.0, "TAILINDE": 2.0}
    for name, value in tail.items():
        c = np.zeros((nfib, PARAM_NCOEF))
        c[:, 0] = value
        params[name] = c

    fibermin = ins.FIBERS_PER_PETAL * spectro + int(fibers[0])
    meta = {"CAMERA": camera, "PSFTYPE": "GAUSS-HERMITE", "SIMTRUTH": True,
            "CROPROW0": row0, "CROPCOL0": col0}
    psf = GaussHermitePSF(xcoef, ycoef, wavemin, wavemax, params, GHDEG, GHDEG,
                          hsizex=8, hsizey=5, npix_x=nx, npix_y=ny, fibermin=fibermin, meta=meta)

    # nominal PSF: offset traces, shifted wavelength solution, plain Gaussian spots
    dx0 = rng.uniform(0.5, 1.5) * rng.choice([-1.0, 1.0])
    dlam = rng.uniform(2.0, 4.0) * rng.choice([-1.0, 1.0])
    xnom = xcoef.copy()
    xnom[:, 0] += dx0 + rng.normal(0.0, 0.1, nfib)
    ynom = _legfit_rows(lambda i, w: yfun(i, np.asarray(w) + dlam) - row0, nfib, wavemin, wavemax, TRACE_NCOEF)
    nparams = {name: np.zeros((nfib, 1)) for name in psf.param_names()}
    nparams["GHSIGX"][:, 0] = 1.1
    nparams["GHSIGY"][:, 0] = 1.2
    nparams["GH-0-0"][:, 0] = 1.0
    for name, value in tail.items():
        if name != "TAILAMP":
            nparams[name][:, 0] = value
    nominal = GaussHermitePSF(xnom, ynom, wavemin, wavemax, nparams, GHDEG, GHDEG,
                              hsizex=8, hsizey=5, npix_x=nx, npix_y=ny, fibermin=fibermin,
                              meta={"CAMERA": camera, "PSFTYPE": "GAUSS-HERMITE", "NOMINAL": True,
                                    "NOMDX": float(dx0), "NOMDWAVE": float(dlam)})
    return CameraOptics(camera, psf, nominal, row0, col0, (ny, nx))


def render(psf, fiber, wave, counts, shape):
    """Project delta spots through ``psf`` onto an image.

    The spots are evaluated by the project's one spot kernel
    (:func:`desired.psf.render_spots`), the model the extraction inverts.

    Parameters
    ----------
    psf : GaussHermitePSF
    fiber : array of int, shape (n,)
        Fiber index relative to the PSF's first fiber.
    wave : array, shape (n,)
        Spot wavelengths, Angstrom.
    counts : array, shape (n,)
        Electrons in each spot.
    shape : (int, int)
        Image (rows, cols).

    Returns
    -------
    ndarray, shape ``shape``
        Electrons; stamp pixels off the image are dropped.
    """
    fiber = np.asarray(fiber, dtype=np.int64)
    wave = np.asarray(wave, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    keep = counts != 0
    fiber, wave, counts = fiber[keep], wave[keep], counts[keep]
    if wave.size == 0:
        return np.zeros(shape)
    return render_spots(shape, *psf.spot_parameters(fiber, wave), counts, psf.hsizex, psf.hsizey)


def render_grid(psf, wave, counts, shape):
    """Project spectra sampled on a common wavelength grid (all fibers of ``psf``).

    Same result as :func:`render` with every (fiber, wavelength) pair, but the
    Legendre series are evaluated as matrix products over the grid.

    Parameters
    ----------
    psf : GaussHermitePSF
    wave : array, shape (nwave,)
        Wavelength grid, Angstrom.
    counts : array, shape (nfiber, nwave)
        Electrons in each spot.
    shape : (int, int)

    Returns
    -------
    ndarray, shape ``shape``
    """
    from ..psf import TAIL_PARAMS, reduced_wavelength
    wave = np.asarray(wave, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    nfib = psf.nfiber
    if counts.shape != (nfib, wave.size):
        raise ValueError(f"counts must have shape ({nfib}, {wave.size}); got {counts.shape}")

    def series(coef, wmin, wmax):
        van = legendre.legvander(reduced_wavelength(wave, wmin, wmax), coef.shape[1] - 1)   # [nwave, ncoef]
        return coef @ van.T                                                                   # [nfib, nwave]

    xc = series(psf.xcoef, psf.wavemin, psf.wavemax)
    yc = series(psf.ycoef, psf.wavemin, psf.wavemax)

    def value(name):
        return series(psf.params[name], psf.param_wavemin, psf.param_wavemax)

    keep = (counts != 0).ravel()
    gh = np.empty((nfib, wave.size, psf.ghdegx + 1, psf.ghdegy + 1))
    for i in range(psf.ghdegx + 1):
        for j in range(psf.ghdegy + 1):
            gh[:, :, i, j] = value(f"GH-{i}-{j}")
    tail = np.stack([value(k) for k in TAIL_PARAMS], axis=-1)
    xc, yc = xc.ravel()[keep], yc.ravel()[keep]
    sigx, sigy = value("GHSIGX").ravel()[keep], value("GHSIGY").ravel()[keep]
    gh = gh.reshape(-1, psf.ghdegx + 1, psf.ghdegy + 1)[keep]
    tail = tail.reshape(-1, len(TAIL_PARAMS))[keep]
    return render_spots(shape, xc, yc, sigx, sigy, gh, tail, counts.ravel()[keep],
                        psf.hsizex, psf.hsizey)
