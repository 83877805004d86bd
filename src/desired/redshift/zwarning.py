"""DESI's ZWARN bits (redrock's ``ZWarningMask``), with their values and meanings.

The values are part of the DESI data model: a redshift file's ``ZWARN`` column is
read by DESI's tools with these bit numbers, so they must not change.
"""
from __future__ import annotations

from ..maskbits import BitMask

#: ZWARN bit numbers (value = 1 << bit) and their meanings
ZWARN_BITS = {
    "SKY": (0, "sky fiber"),
    "LITTLE_COVERAGE": (1, "too little wavelength coverage"),
    "SMALL_DELTA_CHI2": (2, "chi-squared of the best fit is too close to that of the second best"),
    "NEGATIVE_MODEL": (3, "synthetic spectrum is negative"),
    "MANY_OUTLIERS": (4, "fraction of points more than 5 sigma away from the best model is too large"),
    "Z_FITLIMIT": (5, "chi-squared minimum at the edge of the redshift fitting range"),
    "NEGATIVE_EMISSION": (6, "a QSO line exhibits negative emission"),
    "UNPLUGGED": (7, "the fiber was unplugged or broken, so no spectrum was obtained"),
    "BAD_TARGET": (8, "catastrophically bad targeting data"),
    "NODATA": (9, "no data for this fiber (ivar = 0 for all pixels)"),
    "BAD_MINFIT": (10, "bad parabola fit to the chi-squared minimum"),
    "POORDATA": (11, "poor input data quality but fitted anyway"),
}

#: the ZWARN mask; ``zwarn.NODATA == 512``
zwarn = BitMask("zwarn", {name: bit for name, (bit, _) in ZWARN_BITS.items()})

#: bits that mark an individual template fit as bad (sorted after good fits)
BADFIT_MASK = (zwarn.NEGATIVE_MODEL | zwarn.MANY_OUTLIERS | zwarn.Z_FITLIMIT
               | zwarn.NEGATIVE_EMISSION | zwarn.BAD_MINFIT)
