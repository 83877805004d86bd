"""Galactic extinction and DECam photometry of simulated targets (issue 12, item 6).

* Every target gets an E(B-V) from a smooth deterministic field over the sky
  (0.01-0.07 mag, a typical DESI footprint range), written to the fibermap
  ``EBV`` column (SFD scale, as DESI's).
* Its spectrum is reddened with :func:`desired.dust.mw_transmission` before it
  enters the instrument, so the truth ``OBJ_FLUX`` is the *observed* flux.
* The fibermap ``FLUX_G/R/Z`` are the AB fluxes (nanomaggies) of the reddened
  spectrum through speclite's DECam 2014 curves, i.e. observed photometry like the
  Legacy Surveys' (not corrected for extinction), and ``FLUX_IVAR`` a 2 % + sky
  floor error.

The dust law and the filter curves are the same as the pipeline's (they are not
the SED: the independence rule of issue 17 is about the spectra).
"""
from __future__ import annotations

import numpy as np

from ..dust import mw_transmission
from ..photometry import decam_nanomaggies

#: wavelength grid covering the DECam g, r, z curves (Angstrom)
PHOT_WAVE = np.arange(3300.0, 11001.0, 2.0)


def galactic_ebv(ra, dec):
    """Smooth E(B-V) field (mag, SFD scale) at (ra, dec) in degrees: 0.01-0.07."""
    ra, dec = np.deg2rad(np.asarray(ra, dtype=np.float64)), np.deg2rad(np.asarray(dec, dtype=np.float64))
    return 0.04 + 0.02 * np.sin(3.0 * ra + 1.0) * np.cos(5.0 * dec) + 0.01 * np.sin(40.0 * ra) * np.sin(40.0 * dec)


def redden(wave, flux, ebv):
    """Spectra (nwave,) or (n, nwave) reddened by E(B-V) ``ebv`` (scalar, or shape (n,): one per spectrum)."""
    return np.asarray(flux) * mw_transmission(wave, ebv)


def observed_fluxes(spectra_fn, ebv):
    """DECam g, r, z nanomaggies of a spectrum function reddened by ``ebv``.

    Parameters
    ----------
    spectra_fn : callable
        ``wave, step -> flux`` (1e-17 erg/s/cm²/Å), e.g. ``lambda w, s: target_spectrum(p, w, s)``.
    ebv : float
    """
    flux = redden(PHOT_WAVE, spectra_fn(PHOT_WAVE, 2.0), ebv)
    return decam_nanomaggies(PHOT_WAVE, flux)
