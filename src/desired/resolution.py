"""The resolution matrix of an extracted spectrum.

A :class:`Resolution` is the banded matrix ``R`` that maps a model spectrum on the
output wavelength grid onto the extracted spectrum (``observed = R @ model``).  It is
stored the DESI way (desi-datamodel.md §7, scipy ``dia_matrix`` convention): an
array ``data`` of shape ``[ndiag, nwave]`` whose row ``k`` holds diagonal offset
``o_k = ndiag // 2 - k``, so that ``R[r, c] = data[ndiag // 2 - (c - r), c]``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
from scipy.special import erf

#: number of diagonals of every standard product (2 * HSIZEY + 1)
NDIAG = 11


def diagonal_offsets(ndiag=NDIAG):
    """Return the diagonal offsets ``[ndiag//2, ..., -ndiag//2]`` of the storage rows."""
    half = ndiag // 2
    return np.arange(half, -half - 1, -1)


class Resolution:
    """A banded resolution matrix.

    Parameters
    ----------
    data : array, shape (ndiag, nwave)
        Diagonals in DESI storage order (see module docstring).

    Attributes
    ----------
    data : ndarray, shape (ndiag, nwave), float64
    offsets : ndarray, shape (ndiag,), int
    """

    def __init__(self, data):
        data = np.array(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] % 2 != 1:
            raise ValueError(f"resolution data must have shape (odd ndiag, nwave); got {data.shape}")
        self.data = data
        self.ndiag, self.nwave = data.shape
        self.offsets = diagonal_offsets(self.ndiag)

    @classmethod
    def from_sigma(cls, sigma, ndiag=NDIAG):
        """Build a row-normalised Gaussian resolution matrix.

        Row ``r`` is a Gaussian of width ``sigma[r]`` (in output pixels) centred on
        pixel ``r``, integrated over each output pixel and normalised to sum to 1
        over the band (rows at the edges of the grid are renormalised to the pixels
        that exist).

        Parameters
        ----------
        sigma : float or array, shape (nwave,)
            Line-spread width of each output pixel, in output pixels.
        ndiag : int
            Number of diagonals (odd).
        """
        sigma = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
        nwave = sigma.size
        half = ndiag // 2
        rows = np.arange(nwave)[:, None]
        cols = rows + np.arange(-half, half + 1)[None, :]          # [nwave, ndiag] column of each band element
        s = np.sqrt(2.0) * sigma[:, None]
        d = cols - rows
        kernel = 0.5 * (erf((d + 0.5) / s) - erf((d - 0.5) / s))
        kernel[(cols < 0) | (cols >= nwave)] = 0.0
        kernel /= kernel.sum(axis=1, keepdims=True)
        return cls.from_rows(kernel)

    @classmethod
    def from_rows(cls, rows):
        """Build from row kernels.

        Parameters
        ----------
        rows : array, shape (nwave, ndiag)
            ``rows[r, j]`` is ``R[r, r + j - ndiag//2]``; entries that fall outside the
            matrix are ignored.
        """
        rows = np.asarray(rows, dtype=np.float64)
        nwave, ndiag = rows.shape
        half = ndiag // 2
        data = np.zeros((ndiag, nwave))
        r = np.arange(nwave)
        for j in range(ndiag):
            offset = j - half                 # c - r
            k = half - offset                 # storage row of this offset
            c = r + offset
            valid = (c >= 0) & (c < nwave)
            data[k, c[valid]] = rows[r[valid], j]
        return cls(data)

    def to_sparse(self):
        """Return the matrix as a ``scipy.sparse.dia_matrix`` of shape (nwave, nwave)."""
        return scipy.sparse.dia_matrix((self.data, self.offsets), shape=(self.nwave, self.nwave))

    def to_dense(self):
        """Return the dense matrix, shape (nwave, nwave)."""
        return self.to_sparse().toarray()

    def rows(self):
        """Return the row kernels, shape (nwave, ndiag), the inverse of :meth:`from_rows`."""
        half = self.ndiag // 2
        out = np.zeros((self.nwave, self.ndiag))
        r = np.arange(self.nwave)
        for j in range(self.ndiag):
            offset = j - half
            c = r + offset
            valid = (c >= 0) & (c < self.nwave)
            out[r[valid], j] = self.data[half - offset, c[valid]]
        return out

    def row_sums(self):
        """Return the sum of each row, shape (nwave,)."""
        return self.rows().sum(axis=1)

    def apply(self, spectrum):
        """Return ``R @ spectrum``.

        Parameters
        ----------
        spectrum : array, shape (nwave,) or (nwave, n)
        """
        return self.to_sparse().dot(np.asarray(spectrum, dtype=np.float64))


def apply_resolution(resolution_data, spectra):
    """Convolve many spectra with their resolution matrices.

    Parameters
    ----------
    resolution_data : array, shape (nspec, ndiag, nwave)
    spectra : array, shape (nspec, nwave)

    Returns
    -------
    ndarray, shape (nspec, nwave)
    """
    resolution_data = np.asarray(resolution_data, dtype=np.float64)
    spectra = np.asarray(spectra, dtype=np.float64)
    nspec, ndiag, nwave = resolution_data.shape
    half = ndiag // 2
    out = np.zeros((nspec, nwave))
    for k in range(ndiag):
        offset = half - k                   # c - r
        # out[:, r] += data[:, k, r + offset] * s[:, r + offset]
        lo, hi = max(0, -offset), min(nwave, nwave - offset)
        out[:, lo:hi] += resolution_data[:, k, lo + offset:hi + offset] * spectra[:, lo + offset:hi + offset]
    return out
