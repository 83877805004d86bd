"""Instrument constants, geometry presets and the raw amplifier layout.

Numbers (sources in shared/reference/simulator-research.md §1):

========================  ==================  ==================  ==================
quantity                  b                   r                   z
========================  ==================  ==================  ==================
trimmed CCD (rows, cols)  4096, 4096          4128, 4114          4128, 4114
raw CCD (rows, cols)      4162, 4232          4194, 4256          4194, 4256
prescan cols / amp        4                   7                   7
overscan cols / amp       64                  64                  64
row prescan / overscan    1 / 32              1 / 32              1 / 32
wavelength on CCD (A)     3570-5949           5625-7740           7419-9834
dispersion A/px blue,red  0.625, 0.549        0.574, 0.484        0.66, 0.54
extraction grid (A)       3600-5800 / 0.8     5760-7620 / 0.8     7520-9824 / 0.8
gain e-/ADU (median)      1.13                1.57                1.53
read noise e- (median)    3.20                2.64                2.49
dark e-/px/hour           1.89                1.14                1.14
========================  ==================  ==================  ==================

Fiber pitch 7.27 px inside a bundle, an extra 10.3 px gap between bundles of 25,
first fiber at x = 121 (b), 172 (r), 135 (z) at mid wavelength; 20 bundles per
spectrograph.

Amplifier layout (DESI-1964; ``C D / A B`` with A lower-left): each amplifier
reads ``ny/2 x nx/2`` active pixels.  Along a raw row, amp A is ``prescan | data
| overscan`` and amp B, read from the right, ``overscan | data | prescan``.
Along a raw column, the lower amps have 1 row of row-prescan, ``ny/2`` data rows
and 32 row-overscan rows; the upper amps mirror this.  Cropped presets keep this
layout with the cropped active size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..io.raw import format_section

BANDS = ("b", "r", "z")

#: extraction output grid per band: (wmin, wmax), step 0.8 A
WAVE_GRID = {"b": (3600.0, 5800.0), "r": (5760.0, 7620.0), "z": (7520.0, 9824.0)}
WAVE_STEP = 0.8

#: wavelength covered by the full CCD rows (first row, last row), Angstrom
CCD_WAVE = {"b": (3570.0, 5949.0), "r": (5625.0, 7740.0), "z": (7419.0, 9834.0)}
#: dispersion at the blue and red end of the CCD, Angstrom per pixel
DISPERSION = {"b": (0.625, 0.549), "r": (0.574, 0.484), "z": (0.66, 0.54)}
#: trimmed CCD size (rows, cols)
CCD_SHAPE = {"b": (4096, 4096), "r": (4128, 4114), "z": (4128, 4114)}
PRESCAN = {"b": 4, "r": 7, "z": 7}
OVERSCAN_COLS = 64
ROW_PRESCAN = 1
ROW_OVERSCAN = 32
#: x of the first fiber at mid wavelength (full CCD), px
FIRST_FIBER_X = {"b": 121.0, "r": 172.0, "z": 135.0}
FIBER_PITCH = 7.27
BUNDLE_GAP = 10.3
FIBERS_PER_BUNDLE = 25
FIBERS_PER_PETAL = 500
#: median gain (e-/ADU), read noise (e-) and dark current (e-/px/hour)
GAIN = {"b": 1.13, "r": 1.57, "z": 1.53}
READNOISE = {"b": 3.20, "r": 2.64, "z": 2.49}
DARK_CURRENT = {"b": 1.89, "r": 1.14, "z": 1.14}
SATURATION_ADU = 65535
#: Mayall geometric collecting area, cm^2
TELESCOPE_AREA = 86587.0
#: fiber solid angle, arcsec^2 (1.52 arcsec diameter)
FIBER_AREA_ARCSEC2 = np.pi / 4 * 1.52 ** 2


def wave_grid(band, window=None):
    """Extraction output grid of ``band`` (Angstrom), optionally limited to ``window``."""
    wmin, wmax = WAVE_GRID[band]
    grid = np.arange(wmin, wmax + 0.5 * WAVE_STEP, WAVE_STEP)
    if window is not None:
        grid = grid[(grid >= window[0] - 1e-6) & (grid <= window[1] + 1e-6)]
    return grid


@dataclass(frozen=True)
class Preset:
    """A simulation geometry: which cameras, fibers and CCD area are simulated.

    Attributes
    ----------
    name : str
    spectrographs : tuple of int
    bands : tuple of str
    fibers : tuple of int
        Fiber indices inside a petal (0..499), whole bundles.
    crop_columns : bool
        Crop the CCD columns to the simulated fibers plus ``column_margin``.
    wave_window : dict of band -> (wmin, wmax) or None
        Crop the CCD rows to this wavelength window (also limits the output grid).
    column_margin : int
        Pixels kept on each side of the outermost traces.
    """

    name: str
    spectrographs: tuple
    bands: tuple
    fibers: tuple
    crop_columns: bool = False
    wave_window: dict = field(default=None)
    column_margin: int = 24

    @property
    def cameras(self):
        """Camera names in simulation order (``b0, r0, z0, b1, ...``)."""
        return [f"{b}{s}" for s in self.spectrographs for b in self.bands]

    @property
    def nfiber(self):
        return len(self.fibers)

    def window(self, band):
        """Wavelength window of ``band`` or None."""
        return None if self.wave_window is None else self.wave_window.get(band)

    def grid(self, band):
        """Output wavelength grid of ``band`` for this preset."""
        return wave_grid(band, self.window(band))


PRESETS = {
    "full": Preset("full", tuple(range(10)), BANDS, tuple(range(500))),
    "petal": Preset("petal", (0,), BANDS, tuple(range(500))),
    "mini": Preset("mini", (0,), BANDS, tuple(range(50)), crop_columns=True),
    "tiny": Preset("tiny", (0,), ("b",), tuple(range(25)), crop_columns=True,
                   wave_window={"b": (4000.0, 4420.0)}),
}


def get_preset(name):
    """Return the :class:`Preset` called ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None


def camera_index(camera):
    """Index of a camera (``b0`` -> 0, ``r0`` -> 1, ..., ``z9`` -> 29) used in seeds."""
    return 3 * int(camera[1:]) + BANDS.index(camera[0].lower())


def amp_layout(band, ny, nx):
    """Raw image shape and amplifier section keywords for a trimmed ``ny x nx`` image.

    Parameters
    ----------
    band : str
    ny, nx : int
        Trimmed (active) size; both even.

    Returns
    -------
    raw_shape : (int, int)
        Raw image (rows, cols).
    sections : dict of str -> dict of str -> (slice, slice)
        For each amp ``A``..``D``: numpy (row, col) slices of ``DATASEC``, ``BIASSEC``,
        ``PRESEC``, ``ORSEC`` in the raw image and ``CCDSEC`` in the trimmed image.
    """
    if ny % 2 or nx % 2:
        raise ValueError(f"trimmed CCD size must be even, got {ny} x {nx}")
    pre, ovs = PRESCAN[band], OVERSCAN_COLS
    nya, nxa = ny // 2, nx // 2
    width = 2 * (pre + nxa + ovs)
    height = 2 * (ROW_PRESCAN + nya + ROW_OVERSCAN)

    def cols(kind, right):
        lo = {"PRESEC": 0, "DATASEC": pre, "BIASSEC": pre + nxa}[kind]
        hi = {"PRESEC": pre, "DATASEC": pre + nxa, "BIASSEC": pre + nxa + ovs}[kind]
        return slice(width - hi, width - lo) if right else slice(lo, hi)

    def rows(kind, top):
        lo = {"DATA": ROW_PRESCAN, "OR": ROW_PRESCAN + nya}[kind]
        hi = {"DATA": ROW_PRESCAN + nya, "OR": ROW_PRESCAN + nya + ROW_OVERSCAN}[kind]
        return slice(height - hi, height - lo) if top else slice(lo, hi)

    sections = {}
    for amp, right, top in (("A", False, False), ("B", True, False), ("C", False, True), ("D", True, True)):
        data_rows = rows("DATA", top)
        sections[amp] = {
            "PRESEC": (data_rows, cols("PRESEC", right)),
            "DATASEC": (data_rows, cols("DATASEC", right)),
            "BIASSEC": (data_rows, cols("BIASSEC", right)),
            "ORSEC": (rows("OR", top), cols("DATASEC", right)),
            "CCDSEC": (slice(nya, ny) if top else slice(0, nya), slice(nxa, nx) if right else slice(0, nxa)),
        }
    return (height, width), sections


def section_keywords(sections):
    """Header keywords (``DATASECA = '[8:2064, 2:2065]'`` ...) of :func:`amp_layout` sections."""
    out = {}
    for amp, secs in sections.items():
        for kind, (r, c) in secs.items():
            out[f"{kind}{amp}"] = format_section(r, c)
    return out
