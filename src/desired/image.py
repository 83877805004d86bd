"""The preprocessed CCD image container."""
from __future__ import annotations

import numpy as np


class Image:
    """A calibrated CCD image of one camera (the preproc product).

    Parameters
    ----------
    pix : array, shape (ny, nx)
        Image in electrons (bias, dark, gain applied; overscan trimmed).
    ivar : array, shape (ny, nx)
        Inverse variance, 1/electron^2; 0 where the pixel is unusable.
    mask : array of int, shape (ny, nx), optional
        ccdmask bits (:data:`desired.maskbits.ccdmask`); zeros when omitted.
    readnoise : float or array, shape (ny, nx)
        Read noise per pixel in electrons.
    header : dict-like, optional
        Keywords (CAMERA, EXPID, NIGHT, ...); copied into a plain dict.
    camera : str, optional
        Camera name such as ``b0``; taken from ``header['CAMERA']`` when omitted.
    """

    def __init__(self, pix, ivar, mask=None, readnoise=0.0, header=None, camera=None):
        self.pix = np.asarray(pix, dtype=np.float64)
        self.ivar = np.asarray(ivar, dtype=np.float64)
        if self.pix.ndim != 2 or self.ivar.shape != self.pix.shape:
            raise ValueError(f"pix and ivar must be 2-D of equal shape; got {self.pix.shape}, {self.ivar.shape}")
        self.mask = np.zeros(self.pix.shape, dtype=np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
        if self.mask.shape != self.pix.shape:
            raise ValueError(f"mask shape {self.mask.shape} differs from image shape {self.pix.shape}")
        self.readnoise = np.broadcast_to(np.asarray(readnoise, dtype=np.float64), self.pix.shape).copy()
        self.header = dict(header) if header is not None else {}
        if camera is None:
            camera = self.header.get("CAMERA")
        self.camera = camera.lower() if camera else None
        if self.camera:
            self.header["CAMERA"] = self.camera

    @property
    def shape(self):
        """(ny, nx)"""
        return self.pix.shape

    def good_ivar(self, badmask=None):
        """Return the ivar with masked pixels set to 0.

        Parameters
        ----------
        badmask : int, optional
            ccdmask bits that make a pixel unusable; every bit but BADREADNOISE by default.
        """
        from .maskbits import CCD_BAD_FOR_EXTRACTION
        bits = CCD_BAD_FOR_EXTRACTION if badmask is None else badmask
        return np.where((self.mask & bits) != 0, 0.0, self.ivar)
