"""The extracted-frame container (frame, sframe, fframe and cframe products)."""
from __future__ import annotations

import numpy as np

from .resolution import Resolution, apply_resolution


class Frame:
    """Extracted spectra of one camera of one exposure.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Wavelength grid in vacuum Angstrom.
    flux : array, shape (nspec, nwave)
        Flux: electron/Angstrom for frames, 1e-17 erg/s/cm2/Angstrom for cframes.
    ivar : array, shape (nspec, nwave)
        Inverse variance of ``flux``.
    mask : array of int, shape (nspec, nwave), optional
        specmask bits; zeros when omitted.
    resolution_data : array, shape (nspec, ndiag, nwave), optional
        Resolution-matrix diagonals of each fiber (see :mod:`desired.resolution`).
    fibermap : astropy.table.Table, optional
        One row per spectrum.
    chi2pix : array, shape (nspec, nwave), optional
        Reduced chi2 of the 2-D model around each extracted pixel.
    header : dict-like, optional
        Keywords (CAMERA, NIGHT, EXPID, TILEID, ...).
    fibers : array of int, shape (nspec,), optional
        Fiber numbers; from ``fibermap['FIBER']`` or ``header['FIBERMIN']`` when omitted.
    scores : astropy.table.Table, optional
        Per-fiber QA scores (SCORES HDU).
    """

    def __init__(self, wave, flux, ivar, mask=None, resolution_data=None, fibermap=None,
                 chi2pix=None, header=None, fibers=None, scores=None):
        self.wave = np.asarray(wave, dtype=np.float64)
        self.flux = np.asarray(flux, dtype=np.float64)
        self.ivar = np.asarray(ivar, dtype=np.float64)
        if self.flux.ndim != 2 or self.flux.shape[1] != self.wave.size or self.ivar.shape != self.flux.shape:
            raise ValueError(f"flux/ivar must have shape (nspec, {self.wave.size}); got {self.flux.shape}, {self.ivar.shape}")
        self.nspec, self.nwave = self.flux.shape
        self.mask = np.zeros(self.flux.shape, dtype=np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
        self.resolution_data = None if resolution_data is None else np.asarray(resolution_data, dtype=np.float64)
        if self.resolution_data is not None and (
                self.resolution_data.ndim != 3 or self.resolution_data.shape[0] != self.nspec
                or self.resolution_data.shape[2] != self.nwave):
            raise ValueError(f"resolution_data must have shape ({self.nspec}, ndiag, {self.nwave}); got {self.resolution_data.shape}")
        self.fibermap = fibermap
        self.chi2pix = None if chi2pix is None else np.asarray(chi2pix, dtype=np.float64)
        self.header = dict(header) if header is not None else {}
        self.scores = scores
        if fibers is None:
            if fibermap is not None and "FIBER" in fibermap.colnames:
                fibers = np.asarray(fibermap["FIBER"])
            else:
                fibers = int(self.header.get("FIBERMIN", 0)) + np.arange(self.nspec)
        self.fibers = np.asarray(fibers, dtype=np.int64)

    @property
    def camera(self):
        """Lower-case camera name from the header, or None."""
        cam = self.header.get("CAMERA")
        return cam.lower() if cam else None

    def resolution(self, ispec):
        """Return the :class:`~desired.resolution.Resolution` of spectrum ``ispec``."""
        if self.resolution_data is None:
            raise ValueError("this frame has no resolution data")
        return Resolution(self.resolution_data[ispec])

    def convolve(self, spectra):
        """Return ``R_i @ spectra[i]`` for every spectrum, shape (nspec, nwave)."""
        if self.resolution_data is None:
            raise ValueError("this frame has no resolution data")
        return apply_resolution(self.resolution_data, spectra)

    def select(self, index):
        """Return a new Frame holding the spectra ``index`` (a slice, int array or bool mask)."""
        idx = np.arange(self.nspec)[index]
        return Frame(self.wave.copy(), self.flux[idx], self.ivar[idx], self.mask[idx],
                     None if self.resolution_data is None else self.resolution_data[idx],
                     None if self.fibermap is None else self.fibermap[idx],
                     None if self.chi2pix is None else self.chi2pix[idx],
                     dict(self.header), self.fibers[idx],
                     None if self.scores is None else self.scores[idx])
