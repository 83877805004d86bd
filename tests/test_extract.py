"""Spectro-perfectionism and boxcar extraction against simulated truth.

Images are rendered with a known Gauss-Hermite PSF from known spectra on the output
grid (a spot of ``F * 0.8`` electrons per output wavelength, the simulator's
convention), with Poisson and read noise; the extraction with the same PSF must
recover ``R @ truth`` within the quoted errors.
"""
import numpy as np
import pytest

from desired.extract import extract_frame, wavelength_grid
from desired.image import Image
from desired.maskbits import ccdmask, specmask
from desired.psf import GaussHermitePSF

DW = 0.8
READNOISE = 3.0


def make_psf(nfiber=12, npix_y=360, ghdeg=2, tail=0.01, x0=12.0):
    """A realistic b-camera-like PSF: 7.3 px fiber pitch, 0.55 A/px, sigma 1.0-1.2 px."""
    wmin, wmax = 3500.0, 5900.0
    xcoef = np.zeros((nfiber, 3))
    xcoef[:, 0] = x0 + 7.3 * np.arange(nfiber)
    xcoef[:, 1] = 0.6                       # slight tilt of the traces
    xcoef[:, 2] = 0.3
    ycoef = np.zeros((nfiber, 3))
    a1 = (wmax - wmin) / (2 * 0.55)         # dy/dlambda = 1/0.55 px per A
    ycoef[:, 1] = a1
    ycoef[:, 0] = 20.0 + a1 * (1 - 2 * (3600.0 - wmin) / (wmax - wmin))   # y(3600 A) = 20
    ycoef[:, 0] += 0.2 * np.sin(np.arange(nfiber))                           # fiber-to-fiber offsets
    params = {"GHSIGX": np.tile([1.05, 0.05], (nfiber, 1)), "GHSIGY": np.tile([1.15, -0.05], (nfiber, 1))}
    for i in range(ghdeg + 1):
        for j in range(ghdeg + 1):
            params[f"GH-{i}-{j}"] = np.zeros((nfiber, 2))
    params["GH-0-0"][:, 0] = 1.0
    params["GH-1-1"][:, 0] = 0.02
    params["GH-2-0"][:, 0] = 0.04
    params["GH-0-2"][:, 0] = -0.03
    params["TAILAMP"] = np.tile([tail, 0.0], (nfiber, 1))
    params["TAILCORE"] = np.tile([2.0, 0.0], (nfiber, 1))
    params["TAILXSCA"] = np.ones((nfiber, 2))
    params["TAILYSCA"] = np.ones((nfiber, 2))
    params["TAILINDE"] = np.tile([1.5, 0.0], (nfiber, 1))
    npix_x = int(x0 + 7.3 * nfiber + 12)
    return GaussHermitePSF(xcoef, ycoef, wmin, wmax, params, ghdeg, ghdeg, hsizex=8, hsizey=5,
                           npix_x=npix_x, npix_y=npix_y, fibermin=0)


def true_spectra(nfiber, wave, rng):
    """Continuum plus narrow emission lines, electron/Angstrom."""
    flux = np.empty((nfiber, wave.size))
    for i in range(nfiber):
        cont = rng.uniform(50, 400) * (1 + 0.3 * np.sin((wave - wave[0]) / rng.uniform(20, 60)))
        lines = np.zeros_like(wave)
        for _ in range(3):
            c = rng.uniform(wave[0], wave[-1])
            lines += rng.uniform(200, 3000) * np.exp(-0.5 * ((wave - c) / 0.5) ** 2)
        flux[i] = cont + lines
    return flux


def render(psf, wave, flux, rng, noise=True):
    """Render spectra through the PSF, add Poisson + read noise; return (pix, ivar, model)."""
    nfiber = flux.shape[0]
    fib = np.repeat(np.arange(nfiber), wave.size)
    ww = np.tile(wave, nfiber)
    model = psf.project(fib, ww, (flux * DW).ravel(), shape=(psf.npix_y, psf.npix_x))
    if noise:
        pix = rng.poisson(np.clip(model, 0, None)).astype(float) + rng.normal(0, READNOISE, model.shape)
    else:
        pix = model.copy()
    ivar = 1.0 / (np.clip(model, 0, None) + READNOISE ** 2)
    return pix, ivar, model


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(7)
    psf = make_psf()
    wave = wavelength_grid(wmin=3600.0, wmax=3760.0, dw=DW)
    truth = true_spectra(psf.nfiber, wave, rng)
    pix, ivar, model = render(psf, wave, truth, rng)
    return psf, wave, truth, pix, ivar, model


def pulls(frame, truth):
    good = frame.ivar > 0
    chi = (frame.flux - frame.convolve(truth)) * np.sqrt(frame.ivar)
    return chi[good]


def test_wavelength_grid_defaults():
    w = wavelength_grid("b1")
    assert w.size == 2751 and w[0] == 3600.0 and abs(w[-1] - 5800.0) < 1e-9
    assert wavelength_grid("r0").size == 2326 and wavelength_grid("z9").size == 2881
    with pytest.raises(ValueError):
        wavelength_grid("x0")


def test_noiseless_extraction_recovers_convolved_truth(scene):
    psf, wave, truth, _, ivar, model = scene
    frame = extract_frame(Image(model, ivar, camera="b0"), psf, wave, bundlesize=6)
    # exact model: the deconvolved flux is the truth, so flux == R truth up to the
    # truncation of R to 11 diagonals (a few thousandths of sigma)
    chi = (frame.flux - frame.convolve(truth)) * np.sqrt(frame.ivar)
    assert np.abs(chi).max() < 0.1 and chi.std() < 0.01, (np.abs(chi).max(), chi.std())
    # total counts are conserved: rows of R sum to 1
    rows = np.array([frame.resolution(i).row_sums() for i in range(frame.nspec)])
    np.testing.assert_allclose(rows, 1.0, atol=1e-10)
    assert np.all(frame.ivar > 0) and np.all(frame.mask == 0)
    assert frame.resolution_data.shape == (psf.nfiber, 11, wave.size)


def test_noisy_extraction_pulls_are_unit_normal(scene):
    psf, wave, truth, pix, ivar, _ = scene
    frame = extract_frame(Image(pix, ivar, camera="b0"), psf, wave, bundlesize=6)
    chi = pulls(frame, truth)
    assert abs(chi.mean()) < 0.02 * 2, chi.mean()      # ~2400 samples: mean sd 0.02
    assert abs(chi.std() - 1) < 0.05, chi.std()
    # chi2pix of a correct model is ~1 (slightly below: fitted dof)
    assert 0.7 < np.median(frame.chi2pix) < 1.1
    # the resolution matrix is a narrow, peaked kernel
    assert np.all(frame.resolution_data[:, 5] > 0.3)
