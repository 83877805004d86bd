"""DESI bit masks: ccdmask, specmask, fibermask (FIBERSTATUS) and ZWARN.

Bit values follow desispec.maskbits and redrock.zwarning (desi-datamodel.md §18).
Each mask is a :class:`BitMask`; ``ccdmask.COSMIC`` is the integer value ``1 << 4``.
"""
from __future__ import annotations

import numpy as np


class BitMask:
    """A named set of bits.

    Parameters
    ----------
    name : str
        Name of the mask (``ccdmask``, ``specmask``...).
    bits : dict of str to int
        Bit name to bit number.
    """

    def __init__(self, name, bits):
        self.name = name
        self._bits = dict(bits)

    def __getattr__(self, key):
        try:
            return 1 << self._bits[key]
        except KeyError:
            raise AttributeError(f"{self.__dict__.get('name', 'mask')} has no bit {key!r}") from None

    def bitnum(self, key):
        """Return the bit number of ``key``."""
        return self._bits[key]

    def mask(self, *keys):
        """Return the OR of the values of the named bits."""
        value = 0
        for key in keys:
            value |= 1 << self._bits[key]
        return value

    def names(self, value):
        """Return the names of the bits set in the integer ``value``."""
        value = int(value)
        return [k for k, b in sorted(self._bits.items(), key=lambda kv: kv[1]) if value & (1 << b)]

    def __iter__(self):
        return iter(sorted(self._bits, key=self._bits.get))

    def __repr__(self):
        return f"BitMask({self.name!r}, {self._bits!r})"


ccdmask = BitMask("ccdmask", {
    "BAD": 0, "HOT": 1, "DEAD": 2, "SATURATED": 3, "COSMIC": 4,
    "PIXFLATZERO": 5, "PIXFLATLOW": 6, "HIGHVAR": 7, "BADREADNOISE": 8, "BADAMP": 9,
})

specmask = BitMask("specmask", {
    "SOMEBADPIX": 0, "ALLBADPIX": 1, "COSMIC": 2, "LOWFLAT": 3, "BADFIBERFLAT": 4,
    "BRIGHTSKY": 5, "BADSKY": 6, "BAD2DFIT": 7, "NODATA": 8, "BADFIBER": 9,
    "BADCOLUMN": 10, "SATURATED": 11, "CONTAMINATED": 12,
})

fibermask = BitMask("fibermask", {
    "UNASSIGNED": 0, "STUCKPOSITIONER": 1, "BROKENFIBER": 2, "RESTRICTED": 3,
    "MISSINGPOSITION": 8, "BADPOSITION": 9, "POORPOSITION": 10, "BRIGHTNEIGHBOR": 11,
    "LOWTRANSMISSION": 12, "NEARCHARGETRAP": 13, "VARIABLETHRU": 14, "LOWEFFTIME": 15,
    "BADFIBER": 16, "BADTRACE": 17, "BADFLAT": 18, "BADARC": 19, "MANYBADCOL": 20,
    "MANYREJECTED": 21, "BADAMPB": 22, "BADAMPR": 23, "BADAMPZ": 24, "BADPETALPOS": 25,
    "BADPETALSKY": 26, "BADPETALSTDSTAR": 27, "BADPETALFLUXCAL": 28, "BADPETALSNR": 29,
    "BADREADNOISE": 30,
})

zwarn = BitMask("zwarn", {
    "SKY": 0, "LITTLE_COVERAGE": 1, "SMALL_DELTA_CHI2": 2, "NEGATIVE_MODEL": 3,
    "MANY_OUTLIERS": 4, "Z_FITLIMIT": 5, "NEGATIVE_EMISSION": 6, "UNPLUGGED": 7,
    "BAD_TARGET": 8, "NODATA": 9, "BAD_MINFIT": 10, "POORDATA": 11,
})

#: DESI_TARGET bits (desitarget main survey desi_mask) used by the pipeline.
desi_target = BitMask("desi_target", {
    "LRG": 0, "ELG": 1, "QSO": 2, "LGE": 3, "QSO_HIZ": 4, "ELG_LOP": 5, "ELG_HIP": 6,
    "ELG_VLO": 7, "SKY": 32, "STD_FAINT": 33, "STD_WD": 34, "STD_BRIGHT": 35,
    "BAD_SKY": 36, "SUPP_SKY": 37, "NO_TARGET": 49, "BGS_ANY": 60, "MWS_ANY": 61,
    "SCND_ANY": 62,
})

#: ccdmask bits that make a pixel unusable for extraction (every bit but BADREADNOISE).
CCD_BAD_FOR_EXTRACTION = ccdmask.mask(
    "BAD", "HOT", "DEAD", "SATURATED", "COSMIC", "PIXFLATZERO", "PIXFLATLOW", "HIGHVAR", "BADAMP"
)


def is_standard_star(desi_target_column):
    """Return a boolean array: which targets carry a standard-star DESI_TARGET bit.

    Parameters
    ----------
    desi_target_column : array of int, shape (nfiber,)
    """
    std = desi_target.mask("STD_FAINT", "STD_WD", "STD_BRIGHT")
    return (np.asarray(desi_target_column, dtype=np.int64) & std) != 0

#: MWS_TARGET bits (desitarget main survey mws_mask) of the Gaia standard stars.
mws_target = BitMask("mws_target", {
    "MWS_BROAD": 0, "MWS_WD": 1, "MWS_NEARBY": 2, "MWS_MAIN_BLUE": 4, "GAIA_STD_FAINT": 33,
    "GAIA_STD_WD": 34, "GAIA_STD_BRIGHT": 35,
})
