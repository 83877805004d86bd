"""exposure-qa files and the report's HTML/PNG files.

exposure-qa (``exposures/{night}/{expid}/exposure-qa-{expid}.fits``): HDU0 keywords
(NIGHT, EXPID, OBSTYPE, EXPTIME), ``CAMERAQA`` (one row per camera and metric:
CAMERA, METRIC, VALUE f8, UNIT, STATUS normal/warning/alarm/none) and
``FIBERQA`` (one row per camera and fiber: TARGETID, CAMERA, FIBER, CLASS, MAG,
SNR, FLAT_MEAN; NaN where the product was missing; empty for arcs).  desispec's
``desispec.io.read_exposure_qa`` reads the FIBERQA table (it has no PETALQA).
"""
from __future__ import annotations

import dataclasses

from astropy.io import fits
from astropy.table import Table

from .fibermap import build_header, optional_table, read_table, table_to_hdu
from .util import atomic_path, fits_header_to_dict, open_fits


@dataclasses.dataclass
class ExposureQA:
    """Metrics of one exposure.

    Attributes
    ----------
    header : dict
        NIGHT, EXPID, OBSTYPE, EXPTIME.
    metrics : dict
        camera -> {METRIC: value}.
    status : dict
        camera -> {METRIC: 'normal' | 'warning' | 'alarm' | 'none'}.
    fibers : astropy.table.Table or None
        Per-fiber metrics (CAMERA, FIBER, CLASS, MAG, SNR, FLAT_MEAN).
    """

    header: dict
    metrics: dict
    status: dict = dataclasses.field(default_factory=dict)
    fibers: Table | None = None


def write_exposure_qa(path, qa, units=None):
    """Write an exposure-qa file.

    Parameters
    ----------
    path : str
        Output file; written atomically.
    qa : ExposureQA
    units : callable, optional
        Metric name -> unit string.
    """
    rows = [(cam, name, float(value), (units(name) if units else ""), qa.status.get(cam, {}).get(name, "none"))
            for cam in sorted(qa.metrics) for name, value in sorted(qa.metrics[cam].items())]
    table = Table(rows=rows or None, names=("CAMERA", "METRIC", "VALUE", "UNIT", "STATUS"),
                  dtype=("S3", "S32", "f8", "S40", "S8"))
    hdus = [fits.PrimaryHDU(header=build_header(qa.header)), table_to_hdu(table, "CAMERAQA")]
    if qa.fibers is not None:
        hdus.append(table_to_hdu(qa.fibers, "FIBERQA"))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


def read_exposure_qa(path):
    """Read an exposure-qa file.

    Returns
    -------
    ExposureQA

    Raises
    ------
    desired.io.util.DataModelError
        Unreadable file or no CAMERAQA table.
    """
    with open_fits(path) as hdus:
        header = fits_header_to_dict(hdus[0].header)
        table = read_table(hdus, "CAMERAQA", path)
        fibers = optional_table(hdus, "FIBERQA", path)
    metrics, status = {}, {}
    for row in table:
        cam = row["CAMERA"].decode() if isinstance(row["CAMERA"], bytes) else str(row["CAMERA"])
        name = row["METRIC"].decode() if isinstance(row["METRIC"], bytes) else str(row["METRIC"])
        level = row["STATUS"].decode() if isinstance(row["STATUS"], bytes) else str(row["STATUS"])
        metrics.setdefault(cam.strip(), {})[name.strip()] = float(row["VALUE"])
        status.setdefault(cam.strip(), {})[name.strip()] = level.strip()
    return ExposureQA(header, metrics, status, fibers)


def write_text(path, text):
    """Write a text file (an HTML page) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def write_figure(path, figure, dpi=72):
    """Save a matplotlib figure (``matplotlib.figure.Figure``, Agg) as PNG atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")


def read_truth_targets(paths):
    """Stack the TRUTH tables (TARGETID, TRUEZ, TRUESPECTYPE, ...) of simulator truth-{expid}.fits files.

    Files without a TRUTH HDU (calibration exposures) are skipped; a target
    appearing in several files is kept once.

    Parameters
    ----------
    paths : list of str

    Returns
    -------
    astropy.table.Table or None
        None when no file holds a TRUTH table.
    """
    from astropy.table import unique, vstack
    tables = []
    for path in paths:
        with open_fits(path) as hdus:
            if "TRUTH" in hdus:
                tables.append(read_table(hdus, "TRUTH", path))
    if not tables:
        return None
    return unique(vstack(tables, metadata_conflicts="silent"), keys="TARGETID")


def read_wavelength(path):
    """The WAVELENGTH HDU of a frame-like file (Angstrom), without reading the rest."""
    from .util import read_array
    with open_fits(path) as hdus:
        return read_array(hdus, "WAVELENGTH", path, ndim=1).astype(float)


def read_rrmodel(path):
    """Best-fit models of a redrock ``rrmodel`` file: {band: (wave (npix,), model (ntarget, npix))}.

    Raises
    ------
    desired.io.util.DataModelError
        Unreadable file or no ``{B}_WAVELENGTH``/``{B}_MODEL`` pair.
    """
    from .util import DataModelError, read_array
    out = {}
    with open_fits(path) as hdus:
        names = [hdu.name for hdu in hdus]
        for name in names:
            if name.endswith("_MODEL") and f"{name[:-6]}_WAVELENGTH" in names:
                band = name[:-6].lower()
                out[band] = (read_array(hdus, f"{name[:-6]}_WAVELENGTH", path, ndim=1).astype(float),
                             read_array(hdus, name, path, ndim=2).astype(float))
    if not out:
        raise DataModelError(f"{path}: no {{B}}_WAVELENGTH/{{B}}_MODEL HDUs (not an rrmodel file)")
    return out
