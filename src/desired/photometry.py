"""Synthetic broad-band photometry through DECam g, r, z (Legacy Surveys' DR9 south system).

Filter curves come from speclite (``decam2014-{g,r,z}``), the community-maintained
package DESI itself uses; nothing is hand-written here.  Fluxes follow the
fibermap convention: AB nanomaggies (``mag = 22.5 - 2.5 log10(nanomaggies)``).
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["BANDS", "decam_nanomaggies", "nanomaggies_to_mag"]

BANDS = ("G", "R", "Z")


@functools.lru_cache(maxsize=1)
def _filters():
    import speclite.filters
    return speclite.filters.load_filters("decam2014-g", "decam2014-r", "decam2014-z")


def decam_nanomaggies(wave, flux):
    """AB fluxes in DECam g, r, z of spectra given in 1e-17 erg/s/cm²/Å.

    Parameters
    ----------
    wave : array, shape (nwave,)
        Vacuum wavelength, Angstrom.  Spectra not covering the filters (3400-11000 Å)
        are padded with zeros by speclite's ``pad_spectrum`` (a few per mil of the g
        and z responses lie outside DESI's 3600-9824 Å).
    flux : array, shape (nwave,) or (nspec, nwave)

    Returns
    -------
    dict
        ``G``, ``R``, ``Z`` -> array, shape () or (nspec,), nanomaggies.
    """
    filt = _filters()
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    if wave[0] > 3409.0 or wave[-1] < 10981.0:
        flux, wave = filt.pad_spectrum(flux, wave, axis=-1, method="zero")
    maggies = filt.get_ab_maggies(flux * 1e-17, wave)
    out = {}
    for band, name in zip(BANDS, maggies.colnames):
        out[band] = np.asarray(maggies[name], dtype=np.float64) * 1e9
    if out["G"].size == 1:
        out = {k: v[0] for k, v in out.items()}
    return out


def nanomaggies_to_mag(nmgy):
    """AB magnitude of a flux in nanomaggies (NaN where the flux is not positive)."""
    nmgy = np.asarray(nmgy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nmgy > 0, 22.5 - 2.5 * np.log10(np.where(nmgy > 0, nmgy, 1.0)), np.nan)
