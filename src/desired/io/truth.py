"""Reader of the simulator's per-camera truth files (tests and benchmarks only; never the pipeline)."""
from __future__ import annotations

import numpy as np

from .util import DataModelError

#: image HDUs of a camera truth file that :func:`read_camera_truth` returns when present
TRUTH_HDUS = ("ELECTRONS", "WAVELENGTH", "FIBERFLAT", "OBJ_FLUX", "SKY_FLUX", "OBJ_ELECTRONS",
              "SKY_ELECTRONS", "FLUXCALIB")


def read_camera_truth(path):
    """Read one ``truth-{camera}-{expid}.fits`` file written by the simulator.

    Parameters
    ----------
    path : str
        The file (``desired.paths.PATTERNS['truth_camera']``).

    Returns
    -------
    dict
        Upper-case HDU name -> float64 array for every HDU of :data:`TRUTH_HDUS` present
        (``ELECTRONS``, ``OBJ_ELECTRONS``, ``SKY_ELECTRONS``: e-/Angstrom per fiber, shape
        (nfiber, nwave); ``FIBERFLAT``: true fiber throughput, (nfiber, nwave); ``FLUXCALIB``:
        point-source e-/Angstrom per 1e-17 erg/s/cm2/Angstrom, (nwave,); ``OBJ_FLUX``/``SKY_FLUX``:
        1e-17 erg/s/cm2/Angstrom per fiber), plus ``header`` (dict of the primary keywords).
    """
    import fitsio
    try:
        with fitsio.FITS(path) as fits:
            names = {hdu.get_extname().upper() for hdu in fits}
            out = {name: np.asarray(fits[name].read(), dtype=np.float64) for name in TRUTH_HDUS if name in names}
            hdr = fits["ELECTRONS"].read_header()
            out["header"] = {key: hdr[key] for key in hdr.keys()}
    except (OSError, ValueError) as err:
        raise DataModelError(path, f"unreadable truth file ({err})") from None
    return out
