"""The redshift fitter's driver: every target of a coadd against every template.

Targets are cut into fixed batches (``batch_size``) whatever the number of
processes, so the results do not depend on how the work is parallelised; a batch
is scanned with :func:`desired.redshift.zscan.scan_template` (shared matrix
products), then each target's minima are refined (:mod:`desired.redshift.fit`).
Batches run serially, on ``nproc`` forked processes, or dealt to MPI ranks.
"""
from __future__ import annotations

import logging
import time

import numpy as np
from astropy.table import Table

from ..maskbits import fibermask
from .fit import combine_candidates, refine_candidate, refine_class, refine_minima
from .zscan import batch_products, clean_band, scan_template, template_basis
from .zwarning import zwarn

log = logging.getLogger(__name__)

#: spectrum-level fibermap bits that make redrock's DESI driver flag a target
_NODATA_BITS = fibermask.mask("BADPOSITION", "BROKENFIBER", "UNASSIGNED")
_COVERAGE_BITS = fibermask.mask("BADAMPB", "BADAMPR", "BADAMPZ")


def prepare_bands(spectra, negflux_nsig=5.0, skymask=True):
    """The bands of a :class:`desired.spectra.Spectra` with unusable pixels at zero weight.

    Returns
    -------
    list of BandSpectra
    """
    bands = []
    for b in spectra.bands:
        rdata = None if spectra.resolution_data is None else spectra.resolution_data[b]
        bands.append(clean_band(spectra.wave[b], spectra.flux[b], spectra.ivar[b], spectra.mask[b], rdata,
                                negflux_nsig=negflux_nsig, skymask=skymask))
    return bands


def usable_templates(templates, bands):
    """The templates that can be evaluated on these bands over their whole redshift grid.

    A template that cannot (e.g. an IGM model not implemented where it matters) is
    dropped with a warning naming it.

    Raises
    ------
    ValueError
        No template is usable.
    """
    keep = []
    for t in templates:
        try:
            for band in bands:
                template_basis(t, band.wave, np.asarray(t.redshifts)[[0, -1]])
            keep.append(t)
        except (NotImplementedError, ValueError) as err:
            log.warning("template %s (%s) not used: %s", t.fulltype, t.filename, err)
    if not keep:
        raise ValueError("no usable template for these spectra")
    return keep


def _failed_row(flags):
    return dict(z=0.0, zerr=0.0, zwarn=int(flags), chi2=0.0, coeff=np.zeros(0), spectype="GALAXY", subtype="",
                deltachi2=0.0, npixels=0, ncoeff=0, fitmethod="NONE")


#: template classes whose coarse grid resolves their minima: subtypes share the refinement (fit.refine_class)
PRUNED_CLASSES = ("STAR",)
#: template classes whose chi2 minima can be narrower than their coarse step -> number of coarse minima
#: refined even within the velocity limit of a better one (fit.refine_minima ``nrefine``).  GALAXY:
#: emission lines of sigma 40-60 km/s against a 207 km/s step (the Hα/[N II] alias at -940 km/s; 5 of
#: 443 simulated bright-time BGS with the own templates).  4 rather than 3: a line centred between
#: two coarse points ranked 4th in tests/test_redshift.py's alias test; ~5 % more CPU than redrock's
#: rule.  QSO: its 3000 km/s window (templates.MAX_VELOCITY_DIFF) holds ~17 coarse steps of 345 km/s and
#: often several minima of one line identification (broad, double-peaked or shifted lines); the best
#: coarse one need not be the best refined one.  Refining the best 3: 304 simulated quasars with DESI's
#: templates, catastrophic failures 5 -> 4 of 283 confident (one right solution no longer lost to a
#: window twin at +3532 km/s), the project's own templates unchanged (benchmarks/bench_redshifts.py
#: for the CPU cost).
NARROW_MINIMA_REFINE = {"GALAXY": 4, "QSO": 3}


def _fit_target(one, templates, coarse, k, npixels, nminima):
    """Best candidates of one target (index ``k`` of the coarse chi2 arrays), ranked."""
    candidates = []

    def add(t, c):
        c.update(spectype=t.spectype, subtype=t.subtype, vlimit=t.max_velocity_diff, fitmethod=t.method,
                 template=t)
        candidates.append(c)

    for t in templates:
        if t.spectype not in PRUNED_CLASSES:
            for c in refine_minima(one, t, coarse[t.fulltype][k], nminima=nminima,
                                   nrefine=NARROW_MINIMA_REFINE.get(t.spectype, 0)):
                add(t, c)
    for cls in PRUNED_CLASSES:
        members = [t for t in templates if t.spectype == cls]
        if members:
            for t, c in refine_class(one, members, {t.fulltype: coarse[t.fulltype][k] for t in members},
                                     nminima=nminima):
                add(t, c)
    while True:
        ranked = combine_candidates([dict(c) for c in candidates], npixels, nminima=nminima)
        if not ranked or ranked[0].get("refined", True):
            for c in ranked:
                c.pop("template", None)
            return ranked
        top = next(c for c in candidates if c.get("imin") == ranked[0]["imin"]
                   and c["template"] is ranked[0]["template"] and not c.get("refined", True))
        refine_candidate(one, top["template"], top)


def fit_batch(bands, templates, nminima=3, xp=np, dtype=np.float64, targetids=None):
    """Fit every target of one batch.

    Parameters
    ----------
    bands : list of BandSpectra
        The batch's targets (same rows in every band).
    templates : list of Template
    nminima : int
    xp : module
        numpy, or cupy for the coarse scan on a GPU.
    dtype : numpy dtype
        Precision of the coarse scan's M products (refinement is always float64);
        float32 is unsafe at high S/N (see :func:`fit_redshifts`).
    targetids : array, optional
        For log messages.

    Returns
    -------
    list of dict
        The best candidate of each target (keys z, zerr, zwarn, chi2, coeff, spectype,
        subtype, deltachi2, npixels, ncoeff, fitmethod).
    """
    nt = bands[0].flux.shape[0]
    npixels = sum(np.sum(b.weight > 0, axis=1) for b in bands)
    live = np.where(npixels > 0)[0]
    best = [_failed_row(zwarn.NODATA | zwarn.LITTLE_COVERAGE) for _ in range(nt)]
    if live.size == 0:
        return best
    sub = [b.subset(live) for b in bands]
    products = batch_products(sub, xp, dtype)
    coarse = {t.fulltype: scan_template(products, t, xp=xp) for t in templates}
    for k, i in enumerate(live):
        one = [b.subset(slice(k, k + 1)) for b in sub]
        try:
            ranked = _fit_target(one, templates, coarse, k, int(npixels[i]), nminima)
            best[i] = ranked[0] if ranked else _failed_row(zwarn.BAD_MINFIT)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as err:
            tid = targetids[i] if targetids is not None else i
            log.error("target %s: fit failed (%s); flagged BAD_MINFIT|POORDATA", tid, err)
            best[i] = _failed_row(zwarn.BAD_MINFIT | zwarn.POORDATA)
    return best


_STATE = {}


def _run_batch(index):
    """Worker: fit batch ``index`` of the state set up by :func:`fit_redshifts`."""
    from ..threads import single_threaded_blas
    st = _STATE
    lo, hi = st["batches"][index]
    with single_threaded_blas():
        return fit_batch([b.subset(slice(lo, hi)) for b in st["bands"]], st["templates"], st["nminima"],
                         st["xp"], st["dtype"], st["targetids"][lo:hi])


def fit_redshifts(bands, templates, targetids=None, nproc=1, batch_size=256, nminima=3, comm=None,
                  use_gpu=False, precision="double"):
    """Fit redshifts of all targets.

    Parameters
    ----------
    bands : list of BandSpectra
        From :func:`prepare_bands`.
    templates : list of Template
    targetids : array, optional
    nproc : int
        Worker processes (ignored under MPI).
    batch_size : int
        Targets per batch of the coarse scan (fixed: results do not depend on nproc).
    nminima : int
        Solutions kept per template class.
    comm : mpi4py communicator, optional
        Batches are dealt round-robin to the ranks; rank 0 returns the results, others None.
    use_gpu : bool
        Coarse scan with CuPy.
    precision : {'single', 'double'}
        Precision of the coarse scan's M products.  Single is ~20 % faster per target
        but unsafe: the float32 products R'WR x (basis pair products) lose the small
        difference f'Wf - y'c when the basis vectors are nearly degenerate over the
        observed window, so at high S/N the coarse chi2 can be off by more than chi2
        itself (tens of chi2 units per target with a 10-vector GALAXY basis on DESI
        depth coadds; -1.4e6 at a wrong redshift on a bright SDSS elliptical, which
        single precision then returned with ZWARN 0).

    Returns
    -------
    list of dict or None
        Best candidate per target (see :func:`fit_batch`).
    """
    nt = bands[0].flux.shape[0]
    targetids = np.arange(nt) if targetids is None else np.asarray(targetids)
    templates = usable_templates(templates, bands)
    xp = np
    if use_gpu:
        import cupy as xp  # noqa: F811
    dtype = np.float32 if precision == "single" else np.float64
    batches = [(lo, min(lo + batch_size, nt)) for lo in range(0, nt, batch_size)]
    _STATE.update(bands=bands, templates=templates, nminima=nminima, xp=xp, dtype=dtype, batches=batches,
                  targetids=targetids)
    t0 = time.perf_counter()
    try:
        if comm is not None:
            mine = list(range(comm.rank, len(batches), comm.size))
            gathered = comm.gather([(i, _run_batch(i)) for i in mine], root=0)
            if comm.rank != 0:
                return None
            results = dict(item for part in gathered for item in part)
            out = [row for i in range(len(batches)) for row in results[i]]
        elif nproc > 1 and len(batches) > 1:
            import multiprocessing
            with multiprocessing.get_context("fork").Pool(min(nproc, len(batches))) as pool:
                out = [row for part in pool.map(_run_batch, range(len(batches)), chunksize=1) for row in part]
        else:
            out = [row for i in range(len(batches)) for row in _run_batch(i)]
    finally:
        _STATE.clear()
    log.info("fitted %d targets against %d templates in %.1f s", nt, len(templates), time.perf_counter() - t0)
    return out


def fibermap_flags(fibermap):
    """ZWARN bits that DESI's redrock driver sets from the coadd's fibermap, per row."""
    n = len(fibermap)
    flags = np.zeros(n, dtype=np.int64)
    if fibermap is None:
        return flags
    cols = fibermap.colnames
    status = np.zeros(n, dtype=np.int64)
    for name in ("COADD_FIBERSTATUS", "FIBERSTATUS"):
        if name in cols:
            status = np.asarray(fibermap[name]).astype(np.int64)
            break
    objtype = (np.char.strip(np.asarray(fibermap["OBJTYPE"]).astype(str)) if "OBJTYPE" in cols
               else np.full(n, ""))
    flags[(status & fibermask.POORPOSITION) != 0] |= zwarn.POORDATA
    flags[((status & _NODATA_BITS) != 0) | (objtype == "BAD")] |= zwarn.NODATA
    flags[(status & fibermask.BROKENFIBER) != 0] |= zwarn.UNPLUGGED
    flags[objtype == "SKY"] |= zwarn.SKY
    flags[(status & _COVERAGE_BITS) != 0] |= zwarn.LITTLE_COVERAGE
    return flags


def redshift_table(best, targetids, fibermap=None, ncoeff=None):
    """REDSHIFTS table (redrock's columns) from the best candidates.

    Targets flagged NODATA by their fibermap get Z = 0, GALAXY, zero coefficients and
    FITMETHOD NONE, as DESI's redrock driver does.
    """
    n = len(best)
    width = ncoeff or max([len(b["coeff"]) for b in best] + [1])
    coeff = np.zeros((n, width))
    for i, b in enumerate(best):
        coeff[i, :len(b["coeff"])] = b["coeff"]
    table = Table()
    table["TARGETID"] = np.asarray(targetids, dtype=np.int64)
    table["Z"] = np.array([b["z"] for b in best])
    table["ZERR"] = np.array([b["zerr"] for b in best])
    table["ZWARN"] = np.array([b["zwarn"] for b in best], dtype=np.int64)
    table["CHI2"] = np.array([b["chi2"] for b in best])
    table["COEFF"] = coeff
    table["FITMETHOD"] = np.array([b.get("fitmethod", "PCA") for b in best], dtype="U4")
    table["NPIXELS"] = np.array([b["npixels"] for b in best], dtype=np.int64)
    table["SPECTYPE"] = np.array([b["spectype"] for b in best], dtype="U6")
    table["SUBTYPE"] = np.array([b["subtype"] for b in best], dtype="U20")
    table["NCOEFF"] = np.array([b["ncoeff"] for b in best], dtype=np.int64)
    table["DELTACHI2"] = np.array([b["deltachi2"] for b in best])
    if fibermap is not None:
        flags = fibermap_flags(fibermap)
        table["ZWARN"] |= flags
        nodata = (flags & zwarn.NODATA) != 0
        table["Z"][nodata] = 0.0
        table["SPECTYPE"][nodata] = "GALAXY"
        table["SUBTYPE"][nodata] = ""
        table["COEFF"][nodata] = 0.0
        table["FITMETHOD"][nodata] = "NONE"
    return table


def best_models(bands, templates, table, names):
    """Best-fit model of every target in every band (resolution applied), redrock's rrmodel.

    Parameters
    ----------
    bands : list of BandSpectra
    templates : list of Template
    table : astropy.table.Table
        REDSHIFTS (Z, SPECTYPE, SUBTYPE, COEFF).
    names : list of str
        Band names, in the order of ``bands``.

    Returns
    -------
    dict band -> ndarray, shape (ntarget, npix)
        Zero for targets without a fit.
    """
    from .zscan import resolution_apply
    bytype = {(t.spectype, t.subtype): t for t in templates}
    out = {name: np.zeros(band.flux.shape) for name, band in zip(names, bands)}
    for i, row in enumerate(table):
        t = bytype.get((str(row["SPECTYPE"]).strip(), str(row["SUBTYPE"]).strip()))
        coeff = np.asarray(row["COEFF"])
        if t is None or not np.any(coeff):
            continue
        for name, band in zip(names, bands):
            basis = template_basis(t, band.wave, np.array([row["Z"]]))[:, 0, :]
            out[name][i] = resolution_apply(band.rdata[i], basis @ coeff[:t.nbasis])
    return out
