"""The Gauss-Hermite spot model against analytic expectations."""
import numpy as np
from scipy.special import ndtr

from desired.io.psf import read_psf, write_psf
from desired.psf import GaussHermitePSF


def make_psf(nfiber=4, ghdeg=2, tail=0.0):
    xcoef = np.zeros((nfiber, 3)); xcoef[:, 0] = 20 + 8.0 * np.arange(nfiber); xcoef[:, 1] = 0.4
    ycoef = np.zeros((nfiber, 3)); ycoef[:, 0] = 200; ycoef[:, 1] = 190
    params = {"GHSIGX": np.tile([1.0, 0.1], (nfiber, 1)), "GHSIGY": np.tile([1.2, 0.0], (nfiber, 1))}
    for i in range(ghdeg + 1):
        for j in range(ghdeg + 1):
            params[f"GH-{i}-{j}"] = np.zeros((nfiber, 2))
    params["GH-0-0"][:, 0] = 1.0
    params["TAILAMP"] = np.tile([tail, 0.0], (nfiber, 1))
    params["TAILCORE"] = np.tile([2.0, 0.0], (nfiber, 1))
    params["TAILXSCA"] = np.ones((nfiber, 2))
    params["TAILYSCA"] = np.ones((nfiber, 2))
    params["TAILINDE"] = np.tile([2.0, 0.0], (nfiber, 1))
    return GaussHermitePSF(xcoef, ycoef, 3600.0, 5800.0, params, ghdeg, ghdeg,
                           npix_x=60, npix_y=400, fibermin=0)


def test_pure_gaussian_spot_is_pixel_integrated_gaussian():
    psf = make_psf()
    xlo, ylo, st = psf.spots(np.array([1]), np.array([4321.0]))
    xc, yc = psf.x(1, 4321.0), psf.y(1, 4321.0)
    sx, sy = psf.param("GHSIGX", 1, 4321.0), psf.param("GHSIGY", 1, 4321.0)
    xe = xlo[0] + np.arange(18) - 0.5
    ye = ylo[0] + np.arange(12) - 0.5
    px = np.diff(ndtr((xe - xc) / sx))
    py = np.diff(ndtr((ye - yc) / sy))
    ref = np.outer(py, px)
    np.testing.assert_allclose(st[0], ref / ref.sum(), atol=1e-12)


def test_centroid_and_flux_conservation():
    psf = make_psf()
    img = psf.project(np.array([2, 2]), np.array([4700.0, 5100.0]), np.array([1000.0, 500.0]))
    assert abs(img.sum() - 1500.0) < 1e-9
    yy, xx = np.mgrid[:400, :60]
    sel = yy < (psf.y(2, 4700.0) + psf.y(2, 5100.0)) / 2
    cx = (img * xx)[sel].sum() / img[sel].sum()
    cy = (img * yy)[sel].sum() / img[sel].sum()
    assert abs(cx - psf.x(2, 4700.0)) < 1e-3
    assert abs(cy - psf.y(2, 4700.0)) < 1e-3


def test_psf_file_round_trip(tmp_path):
    psf = make_psf(tail=0.02)
    path = tmp_path / "psf.fits"
    write_psf(path, psf, header={"CAMERA": "b0"})
    back = read_psf(path)
    np.testing.assert_array_equal(back.xcoef, psf.xcoef)
    np.testing.assert_array_equal(back.ycoef, psf.ycoef)
    for k in psf.params:
        np.testing.assert_array_equal(back.params[k], psf.params[k])
    assert back.meta["CAMERA"] == "b0"
    _, _, a = psf.spots([0, 3], [4000.0, 5500.0])
    _, _, b = back.spots([0, 3], [4000.0, 5500.0])
    np.testing.assert_array_equal(a, b)
