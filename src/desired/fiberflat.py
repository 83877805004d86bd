"""The fiber-flat container (fiberflat, fiberflatnight and fiberflatexp products)."""
from __future__ import annotations

import numpy as np


class FiberFlat:
    """Relative fiber-to-fiber throughput of one camera versus wavelength.

    Calibrated flux = frame flux / fiberflat.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Wavelength grid in vacuum Angstrom (the frame grid).
    fiberflat : array, shape (nspec, nwave)
        Dimensionless flat correction, about 1.
    ivar : array, shape (nspec, nwave)
        Inverse variance of ``fiberflat``.
    mask : array of int, shape (nspec, nwave), optional
        specmask bits; zeros when omitted.
    meanspec : array, shape (nwave,), optional
        Mean (deconvolved) lamp spectrum in electron/Angstrom; ones when omitted.
    header : dict-like, optional
        Keywords (CAMERA, NIGHT, EXPID, CHI2PDF, ...).
    fibermap : astropy.table.Table, optional
    fibers : array of int, shape (nspec,), optional
        Fiber numbers; from ``fibermap['FIBER']`` or ``header['FIBERMIN']`` when omitted.
    """

    def __init__(self, wave, fiberflat, ivar, mask=None, meanspec=None, header=None, fibermap=None, fibers=None):
        self.wave = np.asarray(wave, dtype=np.float64)
        self.fiberflat = np.asarray(fiberflat, dtype=np.float64)
        self.ivar = np.asarray(ivar, dtype=np.float64)
        if self.fiberflat.ndim != 2 or self.fiberflat.shape[1] != self.wave.size or self.ivar.shape != self.fiberflat.shape:
            raise ValueError(f"fiberflat/ivar must have shape (nspec, {self.wave.size}); "
                             f"got {self.fiberflat.shape}, {self.ivar.shape}")
        self.nspec, self.nwave = self.fiberflat.shape
        self.mask = np.zeros(self.fiberflat.shape, np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
        if self.mask.shape != self.fiberflat.shape:
            raise ValueError(f"mask shape {self.mask.shape} differs from {self.fiberflat.shape}")
        self.meanspec = np.ones(self.nwave) if meanspec is None else np.asarray(meanspec, dtype=np.float64)
        if self.meanspec.shape != (self.nwave,):
            raise ValueError(f"meanspec must have shape ({self.nwave},); got {self.meanspec.shape}")
        self.header = dict(header) if header is not None else {}
        self.fibermap = fibermap
        if fibers is None:
            if fibermap is not None and "FIBER" in fibermap.colnames:
                fibers = np.asarray(fibermap["FIBER"])
            else:
                fibers = int(self.header.get("FIBERMIN", 0)) + np.arange(self.nspec)
        self.fibers = np.asarray(fibers, dtype=np.int64)
