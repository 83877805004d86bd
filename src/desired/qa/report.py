"""Collect a production's products into exposure-qa metrics and a static HTML report.

Layout of the report (under ``{redux}/qa/``, :data:`desired.paths.PATTERNS` ``qa_report``)::

    index.html                          production: status table, failed jobs, nights, healpix pixels
    {night}/index.html                  the night's exposures, one colour per camera
    {night}/{expid}/index.html          metrics of every camera of the exposure
    {night}/{expid}/{camera}.html       plots and metrics of one camera
    healpix/{survey}-{program}-{pix}.html  redshifts of one pixel
    *.png                               figures next to their page

Every section of a page is optional: it is present when its product exists.  A
product that cannot be read is reported as an alarm on its camera (it does not
stop the report).
"""
from __future__ import annotations

import dataclasses
import glob
import html
import logging
import os
import re

import numpy as np
from astropy.table import Table

from .. import paths as desired_paths
from ..io.util import DataModelError
from . import metrics as qm

log = logging.getLogger(__name__)

#: products of one camera of one exposure that the QA reads, in pipeline order
CAMERA_PRODUCTS = ("preproc", "psf", "shifted_psf", "frame", "fiberflat", "sky", "fluxcalib", "cframe")
_CAMERA_FILE = re.compile(r"^(?:preproc|psf|shifted-psf|frame|fiberflat|sky|fluxcalib|cframe)-([brz]\d)-\d{8}\.fits$")
#: CSS colour of each level
COLORS = {"normal": "#c8f0c8", "warning": "#ffd27f", "alarm": "#ff8a8a", "none": "#ffffff"}


@dataclasses.dataclass
class CameraQA:
    """Metrics, per-fiber metrics, figures and problems of one camera of one exposure."""

    camera: str
    metrics: dict = dataclasses.field(default_factory=dict)
    fibers: dict = dataclasses.field(default_factory=dict)
    figures: list = dataclasses.field(default_factory=list)   # (caption, file name)
    problems: list = dataclasses.field(default_factory=list)  # one-line messages
    products: dict = dataclasses.field(default_factory=dict)  # kind -> path


# ---------------------------------------------------------------- finding products
def list_nights(redux):
    """Nights (int) with a preproc or exposures directory in the production tree."""
    nights = set()
    for sub in ("preproc", "exposures"):
        top = os.path.join(redux, sub)
        if os.path.isdir(top):
            nights.update(int(n) for n in os.listdir(top) if n.isdigit() and len(n) == 8)
    return sorted(nights)


def list_exposures(redux, night):
    """Exposure ids (int) of a night found under preproc/ or exposures/."""
    expids = set()
    for sub in ("preproc", "exposures"):
        top = os.path.join(redux, sub, str(night))
        if os.path.isdir(top):
            expids.update(int(e) for e in os.listdir(top) if e.isdigit())
    return sorted(expids)


def list_cameras(redux, night, expid):
    """Cameras with at least one product of this exposure."""
    cams = set()
    for sub in ("preproc", "exposures"):
        top = os.path.join(redux, sub, str(night), f"{int(expid):08d}")
        if os.path.isdir(top):
            cams.update(m.group(1) for m in map(_CAMERA_FILE.match, os.listdir(top)) if m)
    return sorted(cams, key=lambda c: (c[1:], "brz".index(c[0])))


def camera_products(roots, night, expid, camera):
    """kind -> path of every existing product of one camera of one exposure (plus psfnight, fiberflatnight)."""
    found = {}
    for kind in CAMERA_PRODUCTS:
        path = desired_paths.findfile(kind, root=roots[desired_paths.tree(kind)], night=night, expid=expid,
                                      camera=camera)
        if os.path.exists(path):
            found[kind] = path
    for kind in ("psfnight", "fiberflatnight"):
        path = desired_paths.findfile(kind, root=roots["redux"], night=night, camera=camera)
        if os.path.exists(path):
            found[kind] = path
    return found


# ---------------------------------------------------------------- one camera
def _plots():
    """The figures module, imported on first use (matplotlib is slow to import; metrics need none)."""
    from . import plots
    return plots


def _figure(cam, plot_dir, stem, caption, make):
    """Make one figure with ``make()`` and save it as ``{plot_dir}/{stem}.png`` (no-op without plot_dir)."""
    if plot_dir is None:
        return
    from ..io.qa import write_figure
    name = f"{stem}.png"
    write_figure(os.path.join(plot_dir, name), make())
    cam.figures.append((caption, name))


def _preproc_section(cam, plot_dir, stem):
    from ..io.image import read_image
    image = read_image(cam.products["preproc"])
    cam.metrics.update(qm.preproc_metrics(image))
    _figure(cam, plot_dir, f"{stem}-preproc", "preproc image and mask",
            lambda: _plots().preproc_thumbnail(image, cam.camera))
    return image


def _trace_section(cam, plot_dir, stem):
    from ..io.psf import read_psf
    kind = "shifted_psf" if "shifted_psf" in cam.products else "psf"
    psf = read_psf(cam.products[kind])
    ref = read_psf(cam.products["psfnight"]) if kind == "shifted_psf" and "psfnight" in cam.products else None
    wave = None
    if "frame" in cam.products:
        # compare the traces over the frame's grid, where the CCD constrains them
        from ..io.qa import read_wavelength
        grid = read_wavelength(cam.products["frame"])
        wave = np.linspace(grid[0], grid[-1], 50)
    if kind == "psf" or ref is None:
        cam.metrics.update(qm.trace_metrics(psf, wave=wave))
    else:
        # widths and chi2 of the night's fitted PSF, shifts of the exposure's traces against it
        cam.metrics.update(qm.trace_metrics(ref, wave=wave))
        shifts = qm.trace_metrics(psf, ref, wave=wave)
        cam.metrics.update({k: v for k, v in shifts.items() if k.startswith("TRSHIFT")})
        wave = qm.psf_wave_grid(psf) if wave is None else wave
        dx, dy = qm.trace_shift_map(psf, ref, wave)
        fibers = psf.fibermin + np.arange(dx.shape[0])
        _figure(cam, plot_dir, f"{stem}-traceshift", "trace shifts against psfnight",
                lambda: _plots().trace_shift_maps(dx, dy, wave, fibers, cam.camera))


def _flat_section(cam, plot_dir, stem, max_offset, obstype):
    from ..io.fiberflat import read_fiberflat
    kind = "fiberflat" if "fiberflat" in cam.products else "fiberflatnight"
    flat = read_fiberflat(cam.products[kind])
    values, per_fiber = qm.fiberflat_metrics(flat, max_offset)
    if obstype == "FLAT" or kind == "fiberflat":
        cam.metrics.update(values)
        cam.fibers["FLAT_MEAN"] = per_fiber["FLAT_MEAN"]
        _figure(cam, plot_dir, f"{stem}-fiberflat", f"{kind} per fiber",
                lambda: _plots().fiberflat_per_fiber(flat, cam.camera))
    return flat


def _read(cam, kind, reader):
    """Read product ``kind`` of a camera; None when absent, None and a recorded problem when unreadable."""
    if kind not in cam.products:
        return None
    try:
        return reader(cam.products[kind])
    except DataModelError as err:
        log.warning("QA of %s: %s", cam.camera, err)
        cam.problems.append(f"{kind}: {err}")
        return None


def _spectra_sections(cam, plot_dir, stem, exptime, flat):
    """Sky, S/N, flux calibration and FIBERSTATUS metrics from frame, sky, fluxcalib and cframe."""
    from ..io.fluxcalib import read_flux_calibration
    from ..io.frame import read_frame
    from ..io.sky import read_sky
    band = qm.band_of(cam.camera)
    frame = _read(cam, "frame", read_frame)
    sky = _read(cam, "sky", read_sky)
    if frame is not None and frame.fibermap is not None:
        cam.metrics.update(qm.fiberstatus_metrics(frame.fibermap))
    # the sky model is fitted to the fiber-flatted frame (desispec): compare like with like
    fframe = frame
    if frame is not None and flat is not None and flat.fiberflat.shape == frame.flux.shape:
        fframe = qm.flat_fielded(frame, flat)
    if frame is not None and str(frame.header.get("OBSTYPE", frame.header.get("FLAVOR", ""))).upper() == "SCIENCE":
        cam.metrics.update(qm.sky_metrics(fframe, sky))
        _figure(cam, plot_dir, f"{stem}-spectra", "sample spectra (fiber-flatted when a flat exists) with sky",
                lambda: _plots().sample_spectra(fframe, sky, title=cam.camera))
        if sky is not None:
            _figure(cam, plot_dir, f"{stem}-skyresid", "sky residuals on sky fibers",
                    lambda: _plots().sky_residuals(fframe, sky, cam.camera))
    calibrated = _read(cam, "cframe", read_frame)
    if calibrated is None and frame is not None and sky is not None:
        from ..frame import Frame
        calibrated = Frame(fframe.wave, fframe.flux - sky.flux, fframe.ivar, fframe.mask, None, fframe.fibermap,
                           header=fframe.header, fibers=fframe.fibers)
    if calibrated is not None:
        values, per_fiber = qm.snr_metrics(calibrated)
        cam.metrics.update(values)
        cam.fibers.update(CLASS=per_fiber["CLASS"], MAG=per_fiber["MAG"], SNR=per_fiber["SNR"])
        _figure(cam, plot_dir, f"{stem}-snr", "S/N vs magnitude per class",
                lambda: _plots().snr_vs_mag(per_fiber, band, cam.camera))
    fluxcalib = _read(cam, "fluxcalib", read_flux_calibration)
    if fluxcalib is not None:
        cam.metrics.update(qm.fluxcalib_metrics(fluxcalib, exptime, band, frame))
        _figure(cam, plot_dir, f"{stem}-calib", "flux calibration vector",
                lambda: _plots().calibration_vector(fluxcalib, cam.camera))
    if frame is not None and "FIBER" not in cam.fibers:
        cam.fibers["FIBER"] = frame.fibers
    if frame is not None and frame.fibermap is not None and "TARGETID" in frame.fibermap.colnames:
        cam.fibers["TARGETID"] = np.asarray(frame.fibermap["TARGETID"])


def camera_qa(roots, night, expid, camera, obstype, exptime, plot_dir=None, max_flat_offset=0.15):
    """Every metric (and, with ``plot_dir``, every figure) of one camera of one exposure.

    Parameters
    ----------
    roots : dict
        Tree roots (:func:`desired.workflow_status.production_roots`).
    night, expid : int
    camera : str
    obstype : str
        ARC, FLAT, SCIENCE...
    exptime : float
        Seconds.
    plot_dir : str, optional
        Directory receiving the PNG files; no figures without it.
    max_flat_offset : float
        Outlier limit of the fiber flat (see :func:`desired.qa.metrics.fiberflat_metrics`).

    Returns
    -------
    CameraQA
    """
    cam = CameraQA(camera, products=camera_products(roots, night, expid, camera))
    stem = f"{camera}-{int(expid):08d}"
    sections = [("preproc", lambda: _preproc_section(cam, plot_dir, stem))]
    if {"psf", "shifted_psf"} & set(cam.products):
        sections.append(("psf", lambda: _trace_section(cam, plot_dir, stem)))
    flat = {}
    if {"fiberflat", "fiberflatnight"} & set(cam.products):
        sections.append(("fiberflat", lambda: flat.setdefault(
            "flat", _flat_section(cam, plot_dir, stem, max_flat_offset, obstype))))
    sections.append(("frame", lambda: _spectra_sections(cam, plot_dir, stem, exptime, flat.get("flat"))))
    for kind, run in sections:
        if kind == "preproc" and kind not in cam.products:
            continue
        try:
            run()
        except (DataModelError, ValueError, KeyError) as err:
            log.warning("QA of %s %s %s: %s", night, expid, camera, err)
            cam.problems.append(f"{kind}: {err}")
    return cam


# ---------------------------------------------------------------- one exposure
def exposure_header(cam_products):
    """NIGHT, EXPID, OBSTYPE, EXPTIME of an exposure from the header of its first preproc or frame."""
    from ..io.util import fits_header_to_dict, open_fits
    for kind in ("preproc", "frame", "cframe", "psf"):
        for products in cam_products:
            if kind in products:
                try:
                    with open_fits(products[kind]) as hdus:
                        hdr = fits_header_to_dict(hdus[0].header)
                except DataModelError as err:
                    log.warning("exposure header: %s", err)
                    continue
                obstype = str(hdr.get("OBSTYPE", hdr.get("FLAVOR", "UNKNOWN"))).strip().upper()
                return {"NIGHT": hdr.get("NIGHT"), "EXPID": hdr.get("EXPID"), "OBSTYPE": obstype,
                        "EXPTIME": float(hdr.get("EXPTIME", 0.0) or 0.0)}
    return {"OBSTYPE": "UNKNOWN", "EXPTIME": 0.0}


def exposure_qa(roots, night, expid, cameras=None, thresholds=None, plot_dir=None, max_flat_offset=0.15,
                nominal=None):
    """Metrics of every camera of one exposure.

    Parameters
    ----------
    roots : dict
    night, expid : int
    cameras : list of str, optional
        Default: every camera with a product.
    thresholds : dict, optional
        Metric family -> warning/alarm ranges (config ``qa.thresholds``).
    plot_dir : str, optional
        Write the figures there.
    nominal : dict, optional
        ``{"zeropoint": {band: ZP}, "sky": {band: 1e-17 erg/s/cm2/A/arcsec2}}`` for EFFTIME.

    Returns
    -------
    header : dict
    cams : dict of str to CameraQA
    """
    cameras = list_cameras(roots["redux"], night, expid) if cameras is None else list(cameras)
    header = exposure_header([camera_products(roots, night, expid, c) for c in cameras])
    header.update(NIGHT=int(night), EXPID=int(expid))
    cams = {}
    for camera in cameras:
        cams[camera] = camera_qa(roots, night, expid, camera, header["OBSTYPE"], header["EXPTIME"],
                                 plot_dir, max_flat_offset)
    if nominal:
        add_effective_time(cams, header["EXPTIME"], nominal)
    return header, cams


def add_effective_time(cams, exptime, nominal):
    """Add EFFTIME and EFFTIME_RATIO to the cameras with ZP and SKY_SB (nominal ZP per band; see metrics)."""
    for cam in cams.values():
        band = qm.band_of(cam.camera)
        zp_nom = (nominal.get("zeropoint") or {}).get(band)
        sky_nom = (nominal.get("sky") or {}).get(band)
        if "ZP" in cam.metrics and "SKY_SB" in cam.metrics and zp_nom is not None and sky_nom is not None:
            eff = qm.effective_time(exptime, cam.metrics["ZP"], cam.metrics["SKY_SB"], zp_nom, sky_nom)
            cam.metrics["EFFTIME"] = eff
            cam.metrics["EFFTIME_RATIO"] = eff / exptime if exptime > 0 else np.nan


def to_exposure_qa(header, cams, thresholds=None):
    """Return a :class:`desired.io.qa.ExposureQA` (metrics, their levels, the FIBERQA table)."""
    from ..io.qa import ExposureQA
    metrics = {c: dict(cam.metrics) for c, cam in cams.items()}
    for c, cam in cams.items():
        metrics[c]["NPROBLEM"] = float(len(cam.problems))
    status = {c: {k: qm.classify(k, v, thresholds) for k, v in m.items()} for c, m in metrics.items()}
    rows = []
    for c, cam in cams.items():
        fibers = cam.fibers.get("FIBER")
        if fibers is None:
            continue
        n = len(fibers)
        for i in range(n):
            rows.append((int(cam.fibers.get("TARGETID", np.full(n, -1))[i]), c, int(fibers[i]),
                         str(cam.fibers.get("CLASS", ["OTHER"] * n)[i]),
                         float(cam.fibers.get("MAG", np.full(n, np.nan))[i]),
                         float(cam.fibers.get("SNR", np.full(n, np.nan))[i]),
                         float(cam.fibers.get("FLAT_MEAN", np.full(n, np.nan))[i])))
    # always present (empty for arcs): desispec.io.read_exposure_qa needs the FIBERQA HDU
    fibers = Table(rows=rows or None, names=("TARGETID", "CAMERA", "FIBER", "CLASS", "MAG", "SNR", "FLAT_MEAN"),
                   dtype=("i8", "S3", "i4", "S5", "f4", "f4", "f4"))
    return ExposureQA(header, metrics, status, fibers)


def write_exposure_metrics(roots, night, expid, outfile, thresholds=None, nominal=None, max_flat_offset=0.15):
    """Compute and write the exposure-qa file of one exposure (no figures); return its ExposureQA."""
    from ..io.qa import write_exposure_qa
    header, cams = exposure_qa(roots, night, expid, thresholds=thresholds, nominal=nominal,
                               max_flat_offset=max_flat_offset)
    qa = to_exposure_qa(header, cams, thresholds)
    write_exposure_qa(outfile, qa, units=lambda name: qm.UNITS.get(qm.metric_family(name), ""))
    return qa


# ---------------------------------------------------------------- redshifts per healpix pixel
def healpix_files(redux):
    """(survey, program, healpix, path) of every redrock file of the production."""
    pattern = os.path.join(redux, "healpix", "*", "*", "*", "*", "redrock-*-*-*.fits")
    out = []
    for path in sorted(glob.glob(pattern)):
        m = re.match(r"redrock-(\w+)-(\w+)-(\d+)\.fits$", os.path.basename(path))
        if m:
            out.append((m.group(1), m.group(2), int(m.group(3)), path))
    return out


def sample_models(spectra, redshifts, rrmodel=None, templates=None):
    """Best-fit models of the targets the report plots: {band: (ntarget, npix)}, zero for the others.

    From the redrock ``rrmodel`` file when it exists, else evaluated from the redrock
    templates directory (redrock's model: the template basis at Z times COEFF, through
    each target's resolution) for the plotted rows only; None when neither is available.
    """
    from ..io.qa import read_rrmodel
    if rrmodel is not None and os.path.exists(rrmodel):
        models = read_rrmodel(rrmodel)
        return {b: models[b][1] for b in spectra.bands if b in models}
    if not templates or not os.path.isdir(templates) or spectra.resolution_data is None:
        return None
    from ..io.templates import read_templates
    from ..redshift.zfind import best_models
    from ..redshift.zscan import BandSpectra
    rows = _plots().sample_rows(spectra.num_spectra())
    bands = [BandSpectra(spectra.wave[b], spectra.flux[b][rows], spectra.ivar[b][rows],
                         spectra.resolution_data[b][rows]) for b in spectra.bands]
    sub = best_models(bands, read_templates(templates), redshifts[rows], spectra.bands)
    out = {b: np.zeros(spectra.flux[b].shape) for b in spectra.bands}
    for b in spectra.bands:
        out[b][rows] = sub[b]
    return out


def healpix_qa(redux, survey, program, healpix, path, truth=None, plot_dir=None, min_deltachi2=25.0,
               templates=None):
    """Redshift metrics and figures of one healpix pixel (n(z), spectra with model, dz vs z with truth).

    ``templates``: redrock template directory, for the best-fit models when no rrmodel file exists.
    """
    from ..io.redshifts import read_redshifts
    from ..io.spectra import read_spectra
    stem = f"{survey}-{program}-{healpix}"
    result = CameraQA(stem, products={"redrock": path})
    try:
        cat = read_redshifts(path)
    except DataModelError as err:
        result.problems.append(str(err))
        return result
    values, per = qm.redshift_metrics(cat.redshifts, cat.fibermap, truth, min_deltachi2)
    result.metrics.update(values)
    result.fibers = per
    _figure(result, plot_dir, f"{stem}-nz", "n(z) per class", lambda: _plots().redshift_histograms(per, stem))
    coadd = desired_paths.findfile("coadd", root=redux, survey=survey, program=program, healpix=healpix)
    if os.path.exists(coadd):
        try:
            spectra = read_spectra(coadd)
            rrmodel = desired_paths.findfile("rrmodel", root=redux, survey=survey, program=program, healpix=healpix)
            if spectra.num_spectra() == len(per["TARGETID"]):
                if spectra.model is None:
                    spectra.model = sample_models(spectra, cat.redshifts, rrmodel, templates)
                _figure(result, plot_dir, f"{stem}-spectra", "sample spectra with best-fit model",
                        lambda: _plots().spectra_with_model(spectra, per, title=stem))
        except (DataModelError, ValueError) as err:
            result.problems.append(f"coadd: {err}")
    if truth is not None and "TRUEZ" in per:
        _figure(result, plot_dir, f"{stem}-dz", "dz vs z against the simulator's truth",
                lambda: _plots().dz_vs_z(per, stem))
    return result


# ---------------------------------------------------------------- workflow status
def production_status(config, workdir=".", running=None):
    """The ``desired status`` table, the failed tasks (with their logs) and the nights without a table.

    Uses :mod:`desired.workflow_status` (the library behind ``desired status``).
    ``running``: whether a Snakemake run is active (default: judged from its lock); False from
    the workflow's own ``onerror`` handler, which holds the lock but runs no job any more.

    Returns
    -------
    dict
        ``table`` (step -> state -> count), ``failed`` (list of task dicts: name,
        log, output), ``missing`` (nights whose exposure table is not built).
    """
    from .. import workflow_status as ws
    tasks, missing = ws.production_tasks(config, workdir)
    incomplete = ws.incomplete_outputs(workdir)
    running = ws.snakemake_running(workdir) if running is None else running
    states = ws.task_states(tasks, workdir, incomplete, running)
    table = ws.status_table(tasks, workdir, states)
    failed = [dict(t) for t in tasks if states[t["name"]] == "failed"]
    for task in failed:
        task["reason"] = ws.failure_line(task, workdir)
    return {"table": table, "failed": failed, "missing": missing}


def _task_fields(task):
    from ..workflow_status import parse_task_name
    try:
        return parse_task_name(task["name"])[1]
    except ValueError:
        return {}


# ---------------------------------------------------------------- HTML
CSS = """body{font-family:sans-serif;font-size:13px;margin:1em}table{border-collapse:collapse;margin:0.5em 0}
td,th{border:1px solid #999;padding:2px 6px;text-align:right}th{background:#eee}td.l,th.l{text-align:left}
.normal{background:#c8f0c8}.warning{background:#ffd27f}.alarm{background:#ff8a8a}.none{background:#fff}
img{margin:4px;border:1px solid #ccc;max-width:640px}nav{margin-bottom:1em}"""


def _esc(text):
    return html.escape(str(text))


def _page(title, body, nav=""):
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body><nav>{nav}</nav><h1>{_esc(title)}</h1>\n{body}\n</body></html>\n")


def _fmt(value):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "nan"
    value = float(value)
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def _link(href, text):
    return f"<a href='{_esc(href)}'>{_esc(text)}</a>"


def metrics_table(columns, thresholds):
    """HTML table: one row per metric, one column per camera (cells coloured by level).

    Parameters
    ----------
    columns : dict of str to dict
        column name -> {METRIC: value}.
    thresholds : dict or None
    """
    names = sorted({k for m in columns.values() for k in m}, key=lambda n: (qm.metric_family(n), n))
    head = "<tr><th class='l'>metric</th><th class='l'>unit</th>" + "".join(
        f"<th>{_esc(c)}</th>" for c in columns) + "</tr>"
    rows = []
    for name in names:
        cells = []
        for values in columns.values():
            if name not in values:
                cells.append("<td>-</td>")
                continue
            level = qm.classify(name, values[name], thresholds)
            cells.append(f"<td class='{level}' title='{level}'>{_fmt(values[name])}</td>")
        unit = qm.UNITS.get(qm.metric_family(name), "")
        rows.append(f"<tr><td class='l'>{_esc(name)}</td><td class='l'>{_esc(unit)}</td>{''.join(cells)}</tr>")
    return f"<table class='metrics'>{head}{''.join(rows)}</table>"


def camera_level(cam, thresholds):
    """Worst level of a camera's metrics; alarm when a product could not be read."""
    levels = [qm.classify(k, v, thresholds) for k, v in cam.metrics.items()]
    if cam.problems:
        levels.append("alarm")
    return qm.worst(levels)


def status_html(status, page_dir, workdir):
    """The status table and the failed tasks with links to their logs."""
    from ..workflow_status import STATES
    if status is None:
        return "<p>No workflow configuration given: status table not shown.</p>"
    head = "<tr><th class='l'>step</th>" + "".join(f"<th>{s}</th>" for s in STATES) + "<th>total</th></tr>"
    rows = []
    for step, counts in status["table"].items():
        cells = "".join(f"<td class='{'alarm' if s == 'failed' and counts[s] else 'none'}'>{counts[s]}</td>"
                        for s in STATES)
        rows.append(f"<tr><td class='l'>{_esc(step)}</td>{cells}<td>{sum(counts.values())}</td></tr>")
    out = f"<h2>Workflow status</h2><table class='status'>{head}{''.join(rows)}</table>"
    if status["missing"]:
        out += f"<p>Nights without an exposure table yet: {', '.join(map(str, status['missing']))}</p>"
    return out + failed_html(status["failed"], page_dir, workdir)


def failed_html(failed, page_dir, workdir):
    """List of failed tasks (alarm) with a link to each log."""
    if not failed:
        return "<p class='normal'>No failed jobs.</p>"
    items = []
    for task in failed:
        logfile = task["log"] if os.path.isabs(task["log"]) else os.path.join(workdir, task["log"])
        link = _link(os.path.relpath(logfile, page_dir), "log") if os.path.exists(logfile) else "(no log)"
        reason = f" <small>{_esc(task['reason'])}</small>" if task.get("reason") else ""
        items.append(f"<li class='alarm'>{_esc(task['name'])}: {link}{reason}</li>")
    return f"<h3 class='alarm'>Failed jobs: {len(failed)}</h3><ul class='failed'>{''.join(items)}</ul>"


def _nav(page_dir, outdir, night=None, expid=None):
    parts = [_link(os.path.relpath(os.path.join(outdir, "index.html"), page_dir), "production")]
    if night is not None:
        parts.append(_link(os.path.relpath(os.path.join(outdir, str(night), "index.html"), page_dir), str(night)))
    if expid is not None:
        parts.append(_link(os.path.relpath(os.path.join(outdir, str(night), f"{expid:08d}", "index.html"),
                                           page_dir), f"{expid:08d}"))
    return " &rsaquo; ".join(parts)


def _figures_html(figures):
    return "".join(f"<figure style='display:inline-block'><img src='{_esc(name)}' alt='{_esc(caption)}'>"
                   f"<figcaption>{_esc(caption)}</figcaption></figure>" for caption, name in figures)


def _problems_html(problems):
    if not problems:
        return ""
    return "<ul>" + "".join(f"<li class='alarm'>unreadable product: {_esc(p)}</li>" for p in problems) + "</ul>"


def camera_page(cam, header, outdir, thresholds):
    """HTML of one camera of one exposure."""
    night, expid = header["NIGHT"], header["EXPID"]
    page_dir = os.path.join(outdir, str(night), f"{expid:08d}")
    products = "".join(f"<li>{_esc(k)}: {_esc(os.path.basename(v))}</li>" for k, v in cam.products.items())
    body = (f"<p>{_esc(header['OBSTYPE'])}, EXPTIME {_fmt(header['EXPTIME'])} s; "
            f"level <span class='{camera_level(cam, thresholds)}'>{camera_level(cam, thresholds)}</span></p>"
            f"{_problems_html(cam.problems)}{metrics_table({cam.camera: cam.metrics}, thresholds)}"
            f"<h2>Figures</h2>{_figures_html(cam.figures) or '<p>none (no products)</p>'}"
            f"<h2>Products</h2><ul>{products}</ul>")
    return _page(f"{night} / {expid:08d} / {cam.camera}", body, _nav(page_dir, outdir, night, expid))


def _tasks_of(failed, night, expid=None):
    out = []
    for task in failed:
        fields = _task_fields(task)
        if str(fields.get("night")) != str(night):
            continue
        if expid is not None and fields.get("expid") not in (None, f"{int(expid):08d}"):
            continue
        if expid is not None and "expid" not in fields:
            continue
        out.append(task)
    return out


def exposure_page(header, cams, outdir, thresholds, failed, workdir):
    """HTML of one exposure: metrics of every camera, links to the camera pages, its failed jobs."""
    night, expid = header["NIGHT"], header["EXPID"]
    page_dir = os.path.join(outdir, str(night), f"{expid:08d}")
    links = " ".join(f"<span class='{camera_level(c, thresholds)}'>{_link(f'{name}.html', name)}</span>"
                     for name, c in cams.items())
    mine = _tasks_of(failed, night, expid)
    body = (f"<p>{_esc(header['OBSTYPE'])}, EXPTIME {_fmt(header['EXPTIME'])} s</p><p>cameras: {links}</p>"
            + (failed_html(mine, page_dir, workdir) if mine else "")
            + "".join(_problems_html([f"{n}: {p}" for p in c.problems]) for n, c in cams.items())
            + metrics_table({n: c.metrics for n, c in cams.items()}, thresholds))
    return _page(f"{night} / {expid:08d}", body, _nav(page_dir, outdir, night))


def night_page(night, exposures, outdir, thresholds, failed, workdir):
    """HTML of one night: one row per exposure, one coloured cell per camera."""
    page_dir = os.path.join(outdir, str(night))
    cameras = sorted({c for _, cams in exposures.values() for c in cams}, key=lambda c: (c[1:], c[0]))
    head = ("<tr><th>EXPID</th><th class='l'>OBSTYPE</th><th>EXPTIME</th><th>EFFTIME</th>"
            + "".join(f"<th>{c}</th>" for c in cameras) + "</tr>")
    rows = []
    for expid, (header, cams) in sorted(exposures.items()):
        eff = [c.metrics["EFFTIME"] for c in cams.values() if np.isfinite(c.metrics.get("EFFTIME", np.nan))]
        cells = []
        for c in cameras:
            if c not in cams:
                cells.append("<td>-</td>")
                continue
            level = camera_level(cams[c], thresholds)
            cells.append(f"<td class='{level}'>{_link(f'{expid:08d}/{c}.html', level)}</td>")
        rows.append(f"<tr><td>{_link(f'{expid:08d}/index.html', f'{expid:08d}')}</td>"
                    f"<td class='l'>{_esc(header['OBSTYPE'])}</td><td>{_fmt(header['EXPTIME'])}</td>"
                    f"<td>{_fmt(np.median(eff)) if eff else '-'}</td>{''.join(cells)}</tr>")
    mine = _tasks_of(failed, night)
    body = (failed_html(mine, page_dir, workdir) if mine else "") + f"<table>{head}{''.join(rows)}</table>"
    return _page(f"Night {night}", body, _nav(page_dir, outdir))


def healpix_page(pix, outdir, thresholds):
    """HTML of the redshifts of one healpix pixel."""
    page_dir = os.path.join(outdir, "healpix")
    per = pix.fibers
    table = ""
    if per and "TRUEZ" in per:
        classes = sorted(set(per["CLASS"]) - {"SKY"})
        rows = "".join(
            f"<tr><td class='l'>{_esc(c)}</td><td>{_fmt(pix.metrics.get(f'NTARGET_{c}'))}</td>"
            f"<td>{_fmt(pix.metrics.get(f'ZSUCCESS_{c}'))}</td><td>{_fmt(pix.metrics.get(f'ZTRUE_SUCCESS_{c}'))}</td>"
            f"<td>{_fmt(pix.metrics.get(f'ZCATASTROPHIC_{c}'))}</td></tr>" for c in classes)
        table = ("<h2>Success against truth</h2><table><tr><th class='l'>class</th><th>N</th><th>ZWARN=0 fraction</th>"
                 f"<th>correct fraction</th><th>catastrophic fraction</th></tr>{rows}</table>")
    body = (_problems_html(pix.problems) + metrics_table({pix.camera: pix.metrics}, thresholds) + table
            + f"<h2>Figures</h2>{_figures_html(pix.figures)}")
    return _page(f"healpix {pix.camera}", body, _nav(page_dir, outdir))


def index_page(nights, pixels, status, outdir, thresholds, workdir):
    """HTML of the production: status table, failed jobs, nights and healpix pixels."""
    rows = []
    for night, exposures in sorted(nights.items()):
        levels = [camera_level(c, thresholds) for _, cams in exposures.values() for c in cams.values()]
        level = qm.worst(levels)
        rows.append(f"<tr><td>{_link(f'{night}/index.html', str(night))}</td><td>{len(exposures)}</td>"
                    f"<td class='{level}'>{level}</td></tr>")
    body = status_html(status, outdir, workdir)
    if status is not None:
        nfailed = float(len(status["failed"]))
        body = (f"<p>NFAILED: <span class='{qm.classify('NFAILED', nfailed, thresholds)}'>"
                f"{int(nfailed)}</span></p>") + body
    body += ("<h2>Nights</h2><table><tr><th>night</th><th>exposures</th><th>worst level</th></tr>"
             f"{''.join(rows)}</table>")
    if pixels:
        classes = sorted({k.split("_", 1)[1] for p in pixels for k in p.metrics if k.startswith("NTARGET_")})
        head = "<tr><th class='l'>pixel</th>" + "".join(f"<th>{c} success</th>" for c in classes) + "</tr>"
        prow = []
        for p in pixels:
            cells = []
            for c in classes:
                key = f"ZSUCCESS_{c}"
                value = p.metrics.get(key)
                level = qm.classify(key, value, thresholds) if value is not None else "none"
                cells.append(f"<td class='{level}'>{_fmt(value) if value is not None else '-'}</td>")
            prow.append(f"<tr><td class='l'>{_link(f'healpix/{p.camera}.html', p.camera)}</td>{''.join(cells)}</tr>")
        body += f"<h2>Redshifts per healpix pixel</h2><table>{head}{''.join(prow)}</table>"
    return _page("Production QA", body, "")


def resolve_nominal(nominal, nights):
    """Nominal ZP and sky per band; a ZP left None becomes the median ZP of the band's cameras in the report."""
    nominal = {"zeropoint": dict((nominal or {}).get("zeropoint") or {}), "sky": dict((nominal or {}).get("sky") or {})}
    for band in "brz":
        if nominal["zeropoint"].get(band) is None:
            zps = [c.metrics["ZP"] for exposures in nights.values() for _, cams in exposures.values()
                   for c in cams.values() if qm.band_of(c.camera) == band and np.isfinite(c.metrics.get("ZP", np.nan))]
            nominal["zeropoint"][band] = float(np.median(zps)) if zps else None
    return nominal


def build_report(roots, outdir=None, config=None, workdir=".", nights=None, expid=None, thresholds=None,
                 nominal=None, max_flat_offset=0.15, min_deltachi2=25.0, write_metrics=False, running=None,
                 templates=None):
    """Write the HTML report of a production, of some nights, or of one exposure.

    Parameters
    ----------
    roots : dict
        Tree roots {raw, calib, redux, truth} (:func:`desired.workflow_status.production_roots`).
    outdir : str, optional
        Report directory; default the directory of PATTERNS['qa_report'] under the redux root.
    config : dict, optional
        Validated workflow config: adds the ``desired status`` table and the failed jobs.
    workdir : str
        Snakemake working directory (where relative roots and logs are found).
    nights : list of int, optional
        Default: every night of the production (and then the healpix pixels too).
    expid : int, optional
        Only this exposure (with one night).
    thresholds : dict, optional
        Config ``qa.thresholds``.
    nominal : dict, optional
        Config ``qa.nominal`` (zeropoint, sky per band) for EFFTIME.
    write_metrics : bool
        Also write every exposure's exposure-qa file.
    running : bool, optional
        Whether a Snakemake run is active (see :func:`production_status`).
    templates : str, optional
        Redrock template directory: best-fit models of the healpix pages when no rrmodel file exists.

    Returns
    -------
    str
        Path of the report's index.html.
    """
    from ..io.qa import read_truth_targets, write_exposure_qa, write_text
    redux = roots["redux"]
    outdir = outdir or os.path.dirname(desired_paths.findfile("qa_report", root=redux))
    status = production_status(config, workdir, running) if config is not None else None
    failed = status["failed"] if status else []
    whole = nights is None
    nights = list_nights(redux) if nights is None else [int(n) for n in nights]
    collected = {}
    for night in nights:
        expids = list_exposures(redux, night) if expid is None else [int(expid)]
        collected[night] = {}
        for e in expids:
            plot_dir = os.path.join(outdir, str(night), f"{e:08d}")
            collected[night][e] = exposure_qa(roots, night, e, thresholds=thresholds, plot_dir=plot_dir,
                                              max_flat_offset=max_flat_offset)
    nominal = resolve_nominal(nominal, collected)
    for night, exposures in collected.items():
        for e, (header, cams) in exposures.items():
            add_effective_time(cams, header["EXPTIME"], nominal)
            page_dir = os.path.join(outdir, str(night), f"{e:08d}")
            for cam in cams.values():
                write_text(os.path.join(page_dir, f"{cam.camera}.html"), camera_page(cam, header, outdir, thresholds))
            write_text(os.path.join(page_dir, "index.html"),
                       exposure_page(header, cams, outdir, thresholds, failed, workdir))
            if write_metrics:
                write_exposure_qa(desired_paths.findfile("qa_exposure", root=redux, night=night, expid=e),
                                  to_exposure_qa(header, cams, thresholds),
                                  units=lambda name: qm.UNITS.get(qm.metric_family(name), ""))
        write_text(os.path.join(outdir, str(night), "index.html"),
                   night_page(night, exposures, outdir, thresholds, failed, workdir))
    pixels = []
    if whole:
        truth_files = glob.glob(os.path.join(roots.get("truth") or "", "*", "*", "truth-*.fits"))
        truth = read_truth_targets(sorted(truth_files)) if roots.get("truth") and truth_files else None
        for survey, program, healpix, path in healpix_files(redux):
            pix = healpix_qa(redux, survey, program, healpix, path, truth, os.path.join(outdir, "healpix"),
                             min_deltachi2, templates)
            write_text(os.path.join(outdir, "healpix", f"{pix.camera}.html"), healpix_page(pix, outdir, thresholds))
            pixels.append(pix)
    index = os.path.join(outdir, "index.html")
    write_text(index, index_page(collected, pixels, status, outdir, thresholds, workdir))
    log.info("wrote the QA report %s (%d nights, %d exposures, %d pixels)", index, len(collected),
             sum(len(x) for x in collected.values()), len(pixels))
    return index
