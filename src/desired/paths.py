"""The one table of file-name patterns.

Every product of the pipeline has one entry in :data:`PATTERNS`: the tree it lives
in (``raw``, ``redux``, ``calib`` or ``truth``) and a pattern relative to that
tree's root, following DESI's layout (desispec.io.meta.findfile).  The patterns
use plain ``{name}`` fields so that Snakemake can use them as wildcard patterns
directly; :func:`findfile` formats the fields the DESI way (EXPID zero-padded to
8 digits, the healpix group directory ``pix // 100``, lower-case camera).

Examples
--------
>>> findfile("preproc", night=20261124, expid=12, camera="b0")
'preproc/20261124/00000012/preproc-b0-00000012.fits'
>>> findfile("coadd", survey="main", program="dark", healpix=18071)
'healpix/main/dark/180/18071/coadd-main-dark-18071.fits'
"""
from __future__ import annotations

import os

#: product name -> (tree, pattern relative to the tree's root)
PATTERNS = {
    # raw data tree ($DESI_SPECTRO_DATA)
    "raw": ("raw", "{night}/{expid}/desi-{expid}.fits.fz"),
    "raw_fibermap": ("raw", "{night}/{expid}/fibermap-{expid}.fits"),
    # calibration tree ($DESI_SPECTRO_CALIB equivalent): per-camera CCD constants
    # and a nominal PSF used as the starting guess of the arc fit
    "calib_ccd": ("calib", "ccd-{camera}.yaml"),
    "calib_psf": ("calib", "psf-nominal-{camera}.fits"),
    # mean night-sky spectrum (wavelength, flux) used to measure y trace shifts
    "calib_sky_template": ("calib", "spec-sky.dat"),
    # nominal point-source flux calibration of each camera (1 s, airmass 1; fluxcalib format),
    # the flagged fallback of the flux calibration when too few standard stars are usable
    "calib_fluxcalib": ("calib", "fluxcalib-nominal-{camera}.fits"),
    # the project's own redrock-format template set (`desired templates`), listed by this file
    "calib_templates": ("calib", "rrtemplates/templates-default.txt"),
    # production tree ($DESI_SPECTRO_REDUX/$SPECPROD)
    "exposure_table": ("redux", "exposure_tables/{month}/exposure_table_{night}.csv"),
    # marker of a raw exposure that reads (workflow check of exposures the scan marked bad)
    "raw_check": ("redux", "preproc/{night}/{expid}/rawcheck-{expid}.txt"),
    "fibermap": ("redux", "preproc/{night}/{expid}/fibermap-{expid}.fits"),
    "preproc": ("redux", "preproc/{night}/{expid}/preproc-{camera}-{expid}.fits"),
    "psf": ("redux", "exposures/{night}/{expid}/psf-{camera}-{expid}.fits"),
    "psfnight": ("redux", "calibnight/{night}/psfnight-{camera}-{night}.fits"),
    "shifted_psf": ("redux", "exposures/{night}/{expid}/shifted-psf-{camera}-{expid}.fits"),
    "frame": ("redux", "exposures/{night}/{expid}/frame-{camera}-{expid}.fits"),
    "fiberflat": ("redux", "exposures/{night}/{expid}/fiberflat-{camera}-{expid}.fits"),
    "fiberflatnight": ("redux", "calibnight/{night}/fiberflatnight-{camera}-{night}.fits"),
    "sky": ("redux", "exposures/{night}/{expid}/sky-{camera}-{expid}.fits"),
    "stdstars": ("redux", "exposures/{night}/{expid}/stdstars-{spectrograph}-{expid}.fits"),
    "fluxcalib": ("redux", "exposures/{night}/{expid}/fluxcalib-{camera}-{expid}.fits"),
    "sframe": ("redux", "exposures/{night}/{expid}/sframe-{camera}-{expid}.fits"),
    "fframe": ("redux", "exposures/{night}/{expid}/fframe-{camera}-{expid}.fits"),
    "cframe": ("redux", "exposures/{night}/{expid}/cframe-{camera}-{expid}.fits"),
    "spectra": ("redux", "healpix/{survey}/{program}/{pixgroup}/{healpix}/spectra-{survey}-{program}-{healpix}.fits"),
    "coadd": ("redux", "healpix/{survey}/{program}/{pixgroup}/{healpix}/coadd-{survey}-{program}-{healpix}.fits"),
    "redrock": ("redux", "healpix/{survey}/{program}/{pixgroup}/{healpix}/redrock-{survey}-{program}-{healpix}.fits"),
    "rrmodel": ("redux", "healpix/{survey}/{program}/{pixgroup}/{healpix}/rrmodel-{survey}-{program}-{healpix}.fits"),
    "healpix_list": ("redux", "healpix/{survey}/{program}/healpix-{survey}-{program}.txt"),
    "zcatalog": ("redux", "zcatalog/zpix-{survey}-{program}.fits"),
    # tile-based spectra/coadds/redshifts per spectrograph (desispec daily groupings):
    # cumulative = every exposure of the tile through {night}, pernight, perexp
    "tile_spectra_cumulative": ("redux", "tiles/cumulative/{tileid}/{night}/spectra-{spectrograph}-{tileid}-thru{night}.fits"),
    "tile_coadd_cumulative": ("redux", "tiles/cumulative/{tileid}/{night}/coadd-{spectrograph}-{tileid}-thru{night}.fits"),
    "tile_redrock_cumulative": ("redux", "tiles/cumulative/{tileid}/{night}/redrock-{spectrograph}-{tileid}-thru{night}.fits"),
    "tile_spectra_pernight": ("redux", "tiles/pernight/{tileid}/{night}/spectra-{spectrograph}-{tileid}-{night}.fits"),
    "tile_coadd_pernight": ("redux", "tiles/pernight/{tileid}/{night}/coadd-{spectrograph}-{tileid}-{night}.fits"),
    "tile_redrock_pernight": ("redux", "tiles/pernight/{tileid}/{night}/redrock-{spectrograph}-{tileid}-{night}.fits"),
    "tile_spectra_perexp": ("redux", "tiles/perexp/{tileid}/{expid}/spectra-{spectrograph}-{tileid}-exp{expid}.fits"),
    "tile_coadd_perexp": ("redux", "tiles/perexp/{tileid}/{expid}/coadd-{spectrograph}-{tileid}-exp{expid}.fits"),
    "tile_redrock_perexp": ("redux", "tiles/perexp/{tileid}/{expid}/redrock-{spectrograph}-{tileid}-exp{expid}.fits"),
    "qa_exposure": ("redux", "exposures/{night}/{expid}/exposure-qa-{expid}.fits"),
    "qa_night": ("redux", "nightqa/{night}/nightqa-{night}.html"),
    # the production's static HTML QA report (desired qa; pages and figures below its directory)
    "qa_report": ("redux", "qa/index.html"),
    # simulator truth tree: never read by the pipeline
    "truth": ("truth", "{night}/{expid}/truth-{expid}.fits"),
    "truth_camera": ("truth", "{night}/{expid}/truth-{camera}-{expid}.fits"),
    "truth_psf": ("truth", "psf-true-{camera}.fits"),
    "truth_ccd": ("truth", "ccd-true-{camera}.yaml"),
}

#: trees that a path can live in
TREES = ("raw", "calib", "redux", "truth")


def _format_fields(fields):
    """Return the fields formatted the DESI way (all values become strings)."""
    out = {}
    for key, value in fields.items():
        if value is None:
            continue
        if key == "expid" and not isinstance(value, str):
            value = f"{int(value):08d}"
        elif key == "camera":
            value = str(value).lower()
        elif key in ("survey", "program"):
            value = str(value).lower()
        out[key] = str(value)
    if "healpix" in out and "pixgroup" not in out:
        out["pixgroup"] = str(int(out["healpix"]) // 100)
    if "night" in out and "month" not in out:
        out["month"] = out["night"][:6]
    return out


def pattern(kind):
    """Return the pattern of product ``kind`` relative to its tree's root.

    Parameters
    ----------
    kind : str
        A key of :data:`PATTERNS`.
    """
    try:
        return PATTERNS[kind][1]
    except KeyError:
        raise KeyError(f"unknown product {kind!r}; known: {', '.join(sorted(PATTERNS))}") from None


def tree(kind):
    """Return the tree (``raw``, ``calib``, ``redux`` or ``truth``) of product ``kind``."""
    pattern(kind)
    return PATTERNS[kind][0]


def findfile(kind, root=None, **fields):
    """Return the path of one product.

    Parameters
    ----------
    kind : str
        A key of :data:`PATTERNS`.
    root : str or os.PathLike, optional
        Root of the product's tree; the relative path is returned when omitted.
    **fields
        Values of the pattern's fields: ``night`` (int YYYYMMDD), ``expid`` (int),
        ``camera`` (``b0``...), ``spectrograph`` (int), ``survey``, ``program``,
        ``healpix`` (int).

    Returns
    -------
    str

    Raises
    ------
    KeyError
        If ``kind`` is unknown or a field the pattern needs is missing.
    """
    pat = pattern(kind)
    values = _format_fields(fields)
    try:
        rel = pat.format(**values)
    except KeyError as err:
        raise KeyError(f"findfile({kind!r}) needs field {err.args[0]!r}") from None
    return os.path.join(os.fspath(root), rel) if root is not None else rel
