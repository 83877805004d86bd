"""Galaxy sizes and the fraction of a galaxy's light that enters a fibre.

A fibre spectrograph sees only the light inside its fibre, so an extended galaxy
is fainter in the spectrum than its total magnitude says, by how much depending
on its size, its profile and the seeing.  DESI's nominal fractions (desimodel /
SurveySpeed, 1.1" seeing) are 0.58 for a point source, 0.42 for an ELG-like
exponential disc of half-light radius 0.45" and 0.195 for a BGS-like de
Vaucouleurs galaxy of 1.5": a nearby BGS galaxy puts a third as much of its
light down the fibre as a star.

Sizes follow the stellar-mass–size relations of van der Wel et al. (2014,
ApJ 788, 28; 3D-HST + CANDELS, 0 < z < 3, their eq. 2 and Table 1, values quoted
from memory of the paper): half-light radius R_e = A (M* / 5e10 M☉)^α with
log A = 0.60 (kpc), α = 0.75, scatter 0.12 dex for early types, log A = 0.86,
α = 0.22, scatter 0.17 dex for late types, at z = 0.25, evolving as (1 + z)^-1.48
(early) and (1 + z)^-0.75 (late).  Early types get a de Vaucouleurs profile
(Sérsic n = 4), late types an exponential (n = 1).  The relations give the
major-axis radius (as Legacy Surveys' SHAPE_R); the fibre sees the light of an
ellipse of axis ratio b/a (:func:`draw_axis_ratio`), computed here as the circular
profile of the same area, radius R_e √(b/a).

The fraction inside a circular fibre of a circular Sérsic profile seen through
Gaussian seeing is a one-dimensional integral: a ring of radius r blurred by a
Gaussian of width σ puts ``ncx2.cdf((a/σ)², 2, (r/σ)²)`` of its light inside the
aperture of radius a, so the fraction is ∫ dL/dr · that dr over r (the
profile's total light from its analytic integral).
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.special import gamma, gammaincinv
from scipy.stats import ncx2

#: DESI fibre diameter on the sky (arcsec; 107 µm at the focal plane)
FIBER_DIAMETER = 1.52
#: seeing FWHM (arcsec) of the simulated exposures, and the one the Legacy Surveys quote
#: FIBERFLUX in (1.5" diameter, 1" Gaussian seeing)
SEEING_FWHM = 1.1
LS_FIBER_DIAMETER, LS_SEEING_FWHM = 1.5, 1.0
#: van der Wel et al. (2014) size-mass relations at z = 0.25: (log10 A / kpc, slope α, scatter dex,
#: redshift exponent β of (1+z)^β, Sérsic index of the profile used here)
SIZE_MASS = {"early": (0.60, 0.75, 0.12, -1.48, 4.0), "late": (0.86, 0.22, 0.17, -0.75, 1.0)}


def sersic_b(n):
    """b_n of the Sérsic profile exp(-b_n ((r/R_e)^(1/n) - 1)): half the light inside R_e."""
    return float(gammaincinv(2 * n, 0.5))


def fiber_fraction(r_half, sersic=1.0, seeing_fwhm=SEEING_FWHM, diameter=FIBER_DIAMETER):
    """Fraction of a circular Sérsic source's light inside a centred circular fibre, Gaussian seeing.

    Parameters
    ----------
    r_half : float
        Half-light radius (arcsec); 0 is a point source.
    sersic : float
        Sérsic index n (1 exponential, 4 de Vaucouleurs).
    seeing_fwhm, diameter : float
        Seeing FWHM and fibre diameter (arcsec).

    Returns
    -------
    float
        In (0, 1).
    """
    sigma = seeing_fwhm / (2 * np.sqrt(2 * np.log(2)))
    x = (0.5 * diameter / sigma) ** 2
    if r_half <= 0:
        return float(ncx2.cdf(x, 2, 0.0))
    return _extended_fraction(round(float(r_half), 4), float(sersic), x, sigma)


@functools.lru_cache(maxsize=65536)
def _extended_fraction(r_half, n, x, sigma):
    b = sersic_b(n)
    total = 2 * np.pi * n * r_half ** 2 * np.exp(b) * gamma(2 * n) / b ** (2 * n)
    # rings beyond a + 8σ put nothing in the fibre; log-spaced radii resolve the cusp of n = 4
    rmax = np.sqrt(x) * sigma + 8 * sigma
    r = np.geomspace(min(1e-4 * r_half, 1e-4), rmax, 4000)
    dldr = 2 * np.pi * r * np.exp(-b * ((r / r_half) ** (1.0 / n) - 1.0)) / total
    inside = ncx2.cdf(x, 2, (r / sigma) ** 2)
    return float(np.trapezoid(dldr * inside, r))


def fiber_flux_ratio(r_half, sersic, seeing_fwhm=SEEING_FWHM, diameter=FIBER_DIAMETER):
    """A galaxy's fibre fraction over a point source's, same seeing and fibre (≤ 1)."""
    return (fiber_fraction(r_half, sersic, seeing_fwhm, diameter)
            / fiber_fraction(0.0, sersic, seeing_fwhm, diameter))


@functools.lru_cache(maxsize=1)
def _angular_table():
    from astropy.cosmology import Planck18
    z = np.linspace(0.005, 6.0, 1200)
    return z, Planck18.angular_diameter_distance(z).to("kpc").value * np.pi / (180 * 3600)


def kpc_per_arcsec(z):
    """Proper kpc per arcsec at redshift ``z`` (Planck 2018)."""
    zz, scale = _angular_table()
    return float(np.interp(z, zz, scale))


def draw_axis_ratio(rng, early):
    """Projected minor/major axis ratio b/a of a galaxy (one or two deviates).

    Late types: a thin oblate disc (intrinsic thickness 0.25) seen at a random
    inclination, b/a = √(cos²i (1 − 0.25²) + 0.25²), cos i uniform.  Early types:
    b/a ~ N(0.75, 0.15) within 0.4-1 (the apparent shapes of SDSS ellipticals peak
    near 0.8 and rarely go below 0.4; e.g. Padilla & Strauss 2008, MNRAS 388, 1321).
    """
    if early:
        while True:
            q = 0.75 + 0.15 * rng.standard_normal()
            if 0.4 <= q <= 1.0:
                return float(q)
    q0, cosi = 0.25, rng.uniform()
    return float(np.sqrt(cosi ** 2 * (1 - q0 ** 2) + q0 ** 2))


def draw_half_light_radius(rng, log_mstar, z, early):
    """Half-light radius (arcsec, major axis) and Sérsic index from the van der Wel et al. (2014) relations.

    Parameters
    ----------
    rng : numpy.random.Generator
        One normal deviate is drawn.
    log_mstar : float
        log10 stellar mass (M☉).
    z : float
        Redshift (> 0).
    early : bool
        Early type (quiescent: de Vaucouleurs) or late type (star forming: exponential).

    Returns
    -------
    r_half : float
        Arcsec.
    sersic : float
    """
    log_a, alpha, scatter, beta, n = SIZE_MASS["early" if early else "late"]
    log_r = (log_a + alpha * (log_mstar - np.log10(5e10)) + beta * np.log10((1 + z) / 1.25)
             + scatter * rng.standard_normal())
    return 10 ** log_r / kpc_per_arcsec(max(z, 0.005)), n
