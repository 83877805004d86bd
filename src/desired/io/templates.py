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


def write_template(path, basis, seed=None):
    """Write one :class:`desired.redshift.basis.BasisTemplate` as a redrock template file.

    HDU ``BASIS_VECTORS`` (float64 [nbasis, nwave]) with CRVAL1 = log10 of the first
    wavelength, CDELT1, LOGLAM = 1, RRTYPE, RRSUBTYP, VERSION, RRMETHOD = 'PCA', RRIGM,
    INSPEC and the fraction of power of each vector (PCAVARnn); no REDSHIFTS HDU, so
    redrock and :func:`read_template` use the class's default redshift grid.

    Parameters
    ----------
    path : str
    basis : desired.redshift.basis.BasisTemplate
    seed : int, optional
        Recorded as RRSEED.
    """
    from .util import atomic_path

    hdr = fits.Header()
    hdr["CRVAL1"] = (basis.loglam0, "log10 first rest vacuum wavelength (A)")
    hdr["CDELT1"] = (basis.dloglam, "log10 wavelength step")
    hdr["LOGLAM"] = (1, "wavelengths are log10")
    hdr["RRTYPE"] = (basis.spectype, "template class")
    hdr["RRSUBTYP"] = (basis.subtype, "template subtype")
    hdr["VERSION"] = (path_version(path), "template version")
    hdr["RRMETHOD"] = ("PCA", "linear combination of the basis vectors")
    hdr["RRIGM"] = (basis.igm_model, "Lyman-series transmission applied by the fitter")
    hdr["INSPEC"] = basis.source[:68]
    hdr["NSPEC"] = (basis.nspec, "number of spectra reduced")
    if seed is not None:
        hdr["RRSEED"] = (seed, "random seed of the build")
    for i, v in enumerate(basis.variance):
        hdr[f"PCAVAR{i:02d}"] = (float(v), f"power fraction of vector {i}")
    hdu = fits.PrimaryHDU(np.asarray(basis.flux, dtype=np.float64), header=hdr)
    hdu.header["EXTNAME"] = "BASIS_VECTORS"
    with atomic_path(path) as tmp:
        fits.HDUList([hdu]).writeto(tmp)


def path_version(path):
    """The version part of ``rrtemplate-{TYPE}[-{SUB}]-{VERSION}.fits`` (after the last '-')."""
    return os.path.basename(path)[:-len(".fits")].rsplit("-", 1)[-1]


def write_template_set(outdir, templates, seed=None):
    """Write every template and a ``templates-default.txt`` listing them; return the file paths."""
    from ..redshift.basis import template_filename
    from .util import atomic_path

    os.makedirs(outdir, exist_ok=True)
    names = []
    for basis in templates:
        name = template_filename(basis)
        write_template(os.path.join(outdir, name), basis, seed=seed)
        names.append(name)
    with atomic_path(os.path.join(outdir, "templates-default.txt")) as tmp:
        with open(tmp, "w") as fh:
            fh.write("# templates built by `desired templates` (desired.redshift.basis)\n")
            fh.writelines(f"{n}\n" for n in names)
    return [os.path.join(outdir, n) for n in names]
