"""Synthetic arc exposures for the PSF-fit tests and benchmark (not a test module)."""
import numpy as np

from desired.image import Image
from desired.psf import GaussHermitePSF

WAVEMIN, WAVEMAX = 5560.0, 7800.0


def true_psf(nfiber=25, fibermin=0, npix_y=4096, ghdeg=2, tail=0.0):
    """A realistic r-camera-like PSF: bundles of 25 at 7.25 px pitch, curved traces."""
    ib = np.arange(nfiber) + fibermin
    x0 = 40.0 + 7.25 * np.arange(nfiber) + 10.4 * ((ib // 25) - fibermin // 25)
    xcoef = np.zeros((nfiber, 6))
    xcoef[:, 0] = x0
    xcoef[:, 1] = 0.8 + 0.002 * (x0 - x0.mean())
    xcoef[:, 2] = 1.5 * ((x0 - 2000) / 2000.0) ** 2 - 0.3
    xcoef[:, 3] = 0.05
    ycoef = np.zeros((nfiber, 6))
    ycoef[:, 0] = 2040.0 + 0.01 * (x0 - x0.mean())
    ycoef[:, 1] = 2110.0
    ycoef[:, 2] = -25.0
    ycoef[:, 3] = 3.0
    params = {"GHSIGX": np.tile([1.06, 0.03, 0.01], (nfiber, 1)),
              "GHSIGY": np.tile([1.15, 0.10, 0.02], (nfiber, 1))}
    for i in range(ghdeg + 1):
        for j in range(ghdeg + 1):
            params[f"GH-{i}-{j}"] = np.zeros((nfiber, 3))
    params["GH-0-0"][:, 0] = 1.0
    params["GH-2-0"][:, 0] = 0.02
    params["GH-0-2"][:, 0] = 0.03
    params["GH-1-1"][:, 0] = 0.04
    params["GH-1-1"][:, 1] = -0.02
    params["TAILAMP"] = np.tile([tail, 0.0, 0.0], (nfiber, 1))
    params["TAILCORE"] = np.tile([2.0, 0.0, 0.0], (nfiber, 1))
    params["TAILXSCA"] = np.tile([1.0, 0.0, 0.0], (nfiber, 1))
    params["TAILYSCA"] = np.tile([1.0, 0.0, 0.0], (nfiber, 1))
    params["TAILINDE"] = np.tile([2.0, 0.0, 0.0], (nfiber, 1))
    npix_x = int(np.ceil(x0.max() + 45))
    return GaussHermitePSF(xcoef, ycoef, WAVEMIN, WAVEMAX, params, ghdeg, ghdeg, hsizex=8, hsizey=5,
                           npix_x=npix_x, npix_y=npix_y, fibermin=fibermin, meta={"CAMERA": "r0"})


def nominal_psf(truth, dx=1.0, dwave=3.0, sigma_scale=0.93):
    """A perturbed starting PSF: traces moved ~1 px, wavelengths off by a few A, widths off."""
    nom = truth.copy()
    nom.xcoef[:, 0] += dx
    nom.xcoef[:, 1] += 0.3
    # y(λ + dwave) ≈ y(λ) + dwave * dy/dλ: shift and a mild scale error
    nom.ycoef[:, 0] += dwave / 0.53
    nom.ycoef[:, 1] += 2.0
    nom.params["GHSIGX"] = np.zeros_like(truth.params["GHSIGX"])
    nom.params["GHSIGX"][:, 0] = truth.params["GHSIGX"][:, 0] * sigma_scale
    nom.params["GHSIGY"] = np.zeros_like(truth.params["GHSIGY"])
    nom.params["GHSIGY"][:, 0] = truth.params["GHSIGY"][:, 0] * sigma_scale
    nom.params["GH-1-1"] = np.zeros_like(truth.params["GH-1-1"])
    return nom


def arc_image(truth, line_wave, line_intensity, peak_flux=2.0e5, readnoise=3.0, seed=1,
              dead_fibers=(), drop_lines=()):
    """Render an arc through ``truth`` with Poisson and read noise.

    Returns
    -------
    image : desired.image.Image
    expected : ndarray, shape (ny, nx)
        The noiseless image (electrons).
    """
    rng = np.random.default_rng(seed)
    fib, lin = np.meshgrid(np.arange(truth.nfiber), np.arange(line_wave.size), indexing="ij")
    fib, lin = fib.ravel(), lin.ravel()
    flux = peak_flux * line_intensity[lin] / line_intensity.max()
    flux = flux * (1 + 0.05 * np.sin(fib))                 # fiber throughput variations
    flux[np.isin(fib, dead_fibers)] = 0.0
    flux[np.isin(line_wave[lin], drop_lines)] = 0.0
    expected = truth.project(fib, line_wave[lin], flux)
    counts = rng.poisson(expected).astype(np.float64) + rng.normal(0, readnoise, expected.shape)
    var = np.clip(counts, 0, None) + readnoise ** 2
    return Image(counts, 1.0 / var, readnoise=readnoise, header={"CAMERA": "r0"}), expected
