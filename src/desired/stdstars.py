"""The standard-star model container (stdstars product)."""
from __future__ import annotations

import numpy as np


class StdStars:
    """Best-fit model spectra of the standard stars of one spectrograph.

    Parameters
    ----------
    wave : array, shape (nwave_model,)
        The stellar template wavelength grid, vacuum Angstrom (not a camera grid).
    flux : array, shape (nstd, nwave_model)
        Models in 1e-17 erg/s/cm2/Angstrom (extinction and Doppler shift applied).
    fibers : array of int, shape (nstd,)
        Fiber number of each star.
    metadata : astropy.table.Table
        One row per star (TARGETID, FIBER, LOGG, TEFF, FEH, CHI2DOF, REDSHIFT, ...).
    coeff : array, shape (nstd, ntemplate), optional
        Linear template weights.
    fibermap : astropy.table.Table, optional
        Fibermap rows of the standards.
    input_frames : astropy.table.Table, optional
        NIGHT, EXPID, CAMERA of the frames used.
    header : dict-like, optional
    """

    def __init__(self, wave, flux, fibers, metadata, coeff=None, fibermap=None, input_frames=None, header=None):
        self.wave = np.asarray(wave, dtype=np.float64)
        self.flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
        if self.flux.ndim != 2 or self.flux.shape[1] != self.wave.size:
            raise ValueError(f"flux must have shape (nstd, {self.wave.size}); got {self.flux.shape}")
        self.fibers = np.asarray(fibers, dtype=np.int64).ravel()
        if self.fibers.size != self.flux.shape[0]:
            raise ValueError(f"{self.fibers.size} fibers for {self.flux.shape[0]} models")
        if len(metadata) != self.fibers.size:
            raise ValueError(f"metadata has {len(metadata)} rows for {self.fibers.size} stars")
        self.metadata = metadata
        self.coeff = None if coeff is None else np.asarray(coeff, dtype=np.float64)
        self.fibermap = fibermap
        self.input_frames = input_frames
        self.header = dict(header) if header is not None else {}

    @property
    def nstd(self):
        """Number of standard stars."""
        return self.fibers.size
