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
    params["TAILXSCA"] = np.tile([1.0, 0.0], (nfiber, 1))
    params["TAILYSCA"] = np.tile([1.0, 0.0], (nfiber, 1))
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


def _numpy_reference_stamps(psf, fiber, wave):
    """The spot model written out with numpy (independent of the compiled kernel)."""
    from desired.psf import hermite_pixel_integrals
    xc, yc = psf.x(fiber, wave), psf.y(fiber, wave)
    xlo = np.rint(xc).astype(int) - psf.hsizex
    ylo = np.rint(yc).astype(int) - psf.hsizey
    nx, ny = 2 * psf.hsizex + 1, 2 * psf.hsizey + 1
    p = {k: psf.param(k, fiber, wave) for k in psf.params}
    xe = (xlo[:, None] + np.arange(nx + 1) - 0.5 - xc[:, None]) / p["GHSIGX"][:, None]
    ye = (ylo[:, None] + np.arange(ny + 1) - 0.5 - yc[:, None]) / p["GHSIGY"][:, None]
    ix, iy = hermite_pixel_integrals(xe, psf.ghdegx), hermite_pixel_integrals(ye, psf.ghdegy)
    core = np.zeros((fiber.size, ny, nx))
    for i in range(psf.ghdegx + 1):
        for j in range(psf.ghdegy + 1):
            core += p[f"GH-{i}-{j}"][:, None, None] * iy[:, j, :, None] * ix[:, i, None, :]
    dx = (xlo[:, None] + np.arange(nx) - xc[:, None]) * p["TAILXSCA"][:, None]
    dy = (ylo[:, None] + np.arange(ny) - yc[:, None]) * p["TAILYSCA"][:, None]
    r2 = dy[:, :, None] ** 2 + dx[:, None, :] ** 2
    tail = p["TAILAMP"][:, None, None] * r2 / (p["TAILCORE"][:, None, None] ** 2 + r2) ** (
        1 + p["TAILINDE"][:, None, None] / 2)
    img = np.clip(core + tail, 0, None)
    return xlo, ylo, img / img.sum(axis=(1, 2), keepdims=True)


def test_compiled_kernel_matches_numpy_reference():
    psf = make_psf(tail=0.03)
    psf.params["GH-1-2"][:, 0] = 0.04          # asymmetric terms, some negative lobes
    psf.params["GH-2-1"][:, 1] = -0.05
    psf.params["TAILXSCA"][:, 0] = 1.3          # the tail scales multiply the offsets
    psf.params["TAILYSCA"][:, 0] = 0.7
    rng = np.random.default_rng(3)
    fib = rng.integers(0, psf.nfiber, 400)
    wave = rng.uniform(3600, 5800, 400)
    xa, ya, sa = psf.spots(fib, wave)
    xb, yb, sb = _numpy_reference_stamps(psf, fib, wave)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_allclose(sa, sb, rtol=0, atol=1e-13)


def test_real_specex_psf_kernel_matches_numpy_reference(real_specex_psf):
    psf = real_specex_psf
    rng = np.random.default_rng(1)
    fib, wave = rng.integers(0, psf.nfiber, 300), rng.uniform(5800, 7600, 300)
    np.testing.assert_allclose(psf.spots(fib, wave)[2], _numpy_reference_stamps(psf, fib, wave)[2],
                               rtol=0, atol=1e-13)
