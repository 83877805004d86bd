"""Resolution matrix: analytic Gaussian cases."""
import numpy as np
import pytest

from desired.resolution import Resolution, apply_resolution


def test_gaussian_rows_sum_to_one_and_symmetric():
    sigma = np.full(200, 1.3)
    res = Resolution.from_sigma(sigma)
    dense = res.to_dense()
    assert res.data.shape == (11, 200)
    np.testing.assert_allclose(dense.sum(axis=1), 1.0, atol=1e-12)
    # away from the edges a constant-width Gaussian gives a symmetric matrix
    inner = dense[20:180, 20:180]
    np.testing.assert_allclose(inner, inner.T, atol=1e-12)


def test_gaussian_matches_dense_convolution():
    rng = np.random.default_rng(3)
    sigma = 1.0 + 0.5 * np.linspace(0, 1, 300)
    res = Resolution.from_sigma(sigma)
    spec = rng.normal(size=300)
    # dense reference: row r is a pixel-integrated Gaussian of width sigma[r]
    from scipy.special import erf
    ref = np.zeros(300)
    for r in range(300):
        c = np.arange(max(0, r - 5), min(300, r + 6))
        d = c - r
        s = np.sqrt(2) * sigma[r]
        k = 0.5 * (erf((d + 0.5) / s) - erf((d - 0.5) / s))
        ref[r] = np.dot(k / k.sum(), spec[c])
    np.testing.assert_allclose(res.apply(spec), ref, atol=1e-12)
    batched = apply_resolution(np.stack([res.data, res.data]), np.stack([spec, 2 * spec]))
    np.testing.assert_allclose(batched[1], 2 * ref, atol=1e-12)


def test_storage_convention_matches_desispec_layout():
    # R[r, c] = data[ndiag//2 - (c - r), c]
    rng = np.random.default_rng(0)
    data = rng.uniform(size=(11, 50))
    dense = Resolution(data).to_dense()
    for r, c in [(10, 12), (20, 17), (30, 30)]:
        assert dense[r, c] == pytest.approx(data[5 - (c - r), c])
    np.testing.assert_allclose(Resolution.from_rows(Resolution(data).rows()).to_dense(), dense)


def test_bad_shape_rejected():
    with pytest.raises(ValueError):
        Resolution(np.zeros((10, 20)))
