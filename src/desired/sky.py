"""The sky-model container (sky product)."""
from __future__ import annotations

import numpy as np


class SkyModel:
    """Sky spectrum of every fiber of one camera, in the frame's units.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Wavelength grid in vacuum Angstrom.
    flux : array, shape (nspec, nwave)
        Sky model in electron/Angstrom (convolved with each fiber's resolution).
    ivar : array, shape (nspec, nwave)
        Inverse variance of the model, including systematics.
    mask : array of int, shape (nspec, nwave), optional
        specmask bits; zeros when omitted.
    header : dict-like, optional
        Keywords (CAMERA, NIGHT, EXPID, ...).
    stat_ivar : array, shape (nspec, nwave), optional
        Statistical-only inverse variance (STATIVAR HDU).
    throughput_corrections : array, shape (nspec,), optional
        Per-fiber multiplicative throughput corrections (THRPUTCORR HDU).
    """

    def __init__(self, wave, flux, ivar, mask=None, header=None, stat_ivar=None, throughput_corrections=None):
        self.wave = np.asarray(wave, dtype=np.float64)
        self.flux = np.asarray(flux, dtype=np.float64)
        self.ivar = np.asarray(ivar, dtype=np.float64)
        if self.flux.ndim != 2 or self.flux.shape[1] != self.wave.size or self.ivar.shape != self.flux.shape:
            raise ValueError(f"flux/ivar must have shape (nspec, {self.wave.size}); got {self.flux.shape}, {self.ivar.shape}")
        self.nspec, self.nwave = self.flux.shape
        self.mask = np.zeros(self.flux.shape, np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
        if self.mask.shape != self.flux.shape:
            raise ValueError(f"mask shape {self.mask.shape} differs from {self.flux.shape}")
        self.header = dict(header) if header is not None else {}
        self.stat_ivar = None if stat_ivar is None else np.asarray(stat_ivar, dtype=np.float64)
        if self.stat_ivar is not None and self.stat_ivar.shape != self.flux.shape:
            raise ValueError(f"stat_ivar shape {self.stat_ivar.shape} differs from {self.flux.shape}")
        self.throughput_corrections = (None if throughput_corrections is None
                                       else np.asarray(throughput_corrections, dtype=np.float64))
        if self.throughput_corrections is not None and self.throughput_corrections.shape != (self.nspec,):
            raise ValueError(f"throughput_corrections must have shape ({self.nspec},)")
