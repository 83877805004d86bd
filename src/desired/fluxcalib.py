"""The flux-calibration container (fluxcalib product)."""
from __future__ import annotations

import numpy as np


class FluxCalib:
    """Flux calibration vector of every fiber of one camera.

    Calibrated flux = frame flux (electron/Angstrom) / ``calib``.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Wavelength grid in vacuum Angstrom.
    calib : array, shape (nspec, nwave)
        Calibration in (electron/Angstrom) per (1e-17 erg/s/cm2/Angstrom).
    ivar : array, shape (nspec, nwave)
        Inverse variance of ``calib``; must be finite and >= 0.
    mask : array of int, shape (nspec, nwave), optional
        specmask bits; zeros when omitted.
    header : dict-like, optional
        Keywords (CAMERA, NIGHT, EXPID, ...).
    fibercorr : astropy.table.Table, optional
        Per-fiber corrections (FLAT_TO_PSF_FLUX, PSF_TO_FIBER_FLUX), one row per fiber.
    stdstar_fibermap : astropy.table.Table, optional
        Fibermap rows of the standard stars used.
    """

    def __init__(self, wave, calib, ivar, mask=None, header=None, fibercorr=None, stdstar_fibermap=None):
        self.wave = np.asarray(wave, dtype=np.float64)
        self.calib = np.asarray(calib, dtype=np.float64)
        self.ivar = np.asarray(ivar, dtype=np.float64)
        if self.calib.ndim != 2 or self.calib.shape[1] != self.wave.size or self.ivar.shape != self.calib.shape:
            raise ValueError(f"calib/ivar must have shape (nspec, {self.wave.size}); got {self.calib.shape}, {self.ivar.shape}")
        if not np.all(np.isfinite(self.ivar)) or np.any(self.ivar < 0):
            raise ValueError("fluxcalib ivar must be finite and >= 0")
        self.nspec, self.nwave = self.calib.shape
        self.mask = np.zeros(self.calib.shape, np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
        if self.mask.shape != self.calib.shape:
            raise ValueError(f"mask shape {self.mask.shape} differs from {self.calib.shape}")
        self.header = dict(header) if header is not None else {}
        self.fibercorr = fibercorr
        self.stdstar_fibermap = stdstar_fibermap
