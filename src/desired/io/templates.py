"""redrock template files (``rrtemplate-*.fits``) and template directories.

A file holds ``BASIS_VECTORS`` (float [nbasis, nwave]; wavelengths from CRVAL1/CDELT1,
log10 when LOGLAM is set; RRTYPE, RRSUBTYP, VERSION, RRMETHOD, RRIGM keywords) and
optionally ``REDSHIFTS`` (the trial grid; redrock's default grid of the class
otherwise).  A directory is read through its ``templates-default.txt`` when present,
else every ``rrtemplate-*.fits`` in it.
"""
from __future__ import annotations

import glob
import logging
import os

import numpy as np
from astropy.io import fits

from ..redshift.templates import Template, default_redshifts

log = logging.getLogger(__name__)


def _igm_model(header, spectype, version):
    """The Lyman-series model of a template, as redrock derives it for old files."""
    if "RRIGM" in header:
        return str(header["RRIGM"]).strip()
    if spectype == "STAR":
        return "None"
    if spectype == "GALAXY":
        return "Calura12"
    if spectype == "QSO":
        return "Kamble20" if version == "1.1" else "Calura12"
    return "None"


def read_template(path):
    """Read one redrock template file.

    Parameters
    ----------
    path : str

    Returns
    -------
    desired.redshift.templates.Template

    Raises
    ------
    ValueError
        Unreadable file, no BASIS_VECTORS HDU, an unknown class without a REDSHIFTS
        HDU, a non-finite basis, or a fitting method other than PCA.
    """
    try:
        with fits.open(path, memmap=False) as hdus:
            if "BASIS_VECTORS" not in hdus:
                raise ValueError("no BASIS_VECTORS HDU")
            hdr = hdus["BASIS_VECTORS"].header
            flux = np.asarray(hdus["BASIS_VECTORS"].data, dtype=np.float64)
            redshifts = (np.asarray(hdus["REDSHIFTS"].data, dtype=np.float64).ravel()
                         if "REDSHIFTS" in hdus else None)
    except (OSError, TypeError) as err:
        raise ValueError(f"cannot read template {path}: {err}") from None
    except ValueError as err:
        raise ValueError(f"cannot read template {path}: {err}") from None
    if flux.ndim != 2 or flux.shape[1] < 2 or not np.all(np.isfinite(flux)):
        raise ValueError(f"template {path}: BASIS_VECTORS must be a finite [nbasis, nwave] array")
    wave = hdr["CRVAL1"] + hdr["CDELT1"] * np.arange(flux.shape[1], dtype=np.float64)
    if hdr.get("LOGLAM"):
        wave = 10 ** wave
    spectype = str(hdr.get("RRTYPE", "")).strip().upper()
    subtype = str(hdr.get("RRSUBTYP", "")).strip().upper()
    version = str(hdr.get("VERSION", "unknown")).strip()
    method = str(hdr.get("RRMETHOD", "PCA")).strip().upper()
    if method != "PCA":
        raise ValueError(f"template {path}: fitting method {method} is not supported (PCA only)")
    if redshifts is None:
        try:
            redshifts = default_redshifts(spectype)
        except ValueError as err:
            raise ValueError(f"template {path}: {err}") from None
    return Template(spectype=spectype, subtype=subtype, wave=wave, flux=flux, redshifts=redshifts,
                    version=version, filename=os.path.basename(path), method=method,
                    igm_model=_igm_model(hdr, spectype, version))


def template_files(path):
    """List the template files of a directory, a ``.txt`` list or a single file.

    Parameters
    ----------
    path : str

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        ``path`` does not exist, or a file named in the list is missing.
    """
    if not os.path.exists(path):
        raise ValueError(f"template path {path} does not exist")
    if os.path.isdir(path):
        listing = os.path.join(path, "templates-default.txt")
        if not os.path.exists(listing):
            return sorted(glob.glob(os.path.join(path, "rrtemplate-*.fits")))
        path = listing
    if not path.endswith(".txt"):
        return [path]
    directory = os.path.dirname(os.path.abspath(path))
    files = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if len(line) < 2 or line.startswith("#"):
                continue
            name = line.split()[0]
            name = name if name.startswith("/") else os.path.join(directory, name)
            if not os.path.exists(name):
                raise ValueError(f"{path} names {name}, which does not exist")
            files.append(name)
    return files


def read_templates(path):
    """Read every usable template of a directory (or list file, or single file).

    Unreadable templates are skipped with a warning naming the file.

    Parameters
    ----------
    path : str

    Returns
    -------
    list of Template
        Sorted by ``fulltype`` as redrock orders them.

    Raises
    ------
    ValueError
        No usable template at ``path``.
    """
    templates = []
    for name in template_files(path):
        try:
            templates.append(read_template(name))
        except ValueError as err:
            log.warning("skipping template: %s", err)
    if not templates:
        raise ValueError(f"no usable redrock template (rrtemplate-*.fits) in {path}")
    return sorted(templates, key=lambda t: t.fulltype)
