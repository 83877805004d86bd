"""Workflow bookkeeping: task names, status sidecars and the progress table.

A *task* is one job of the production DAG, named the desi_pipe way
``<step>_<field>_...``: ``preproc_20261124_b0_00000012``,
``psfnight_20261124_r0``, ``exposure_table_20261124``.  Each task has one output
file whose path comes from :data:`desired.paths.PATTERNS`; for the
failure-absorbing arc steps (``preproc`` of an arc, ``psf``) the output is an
ok/failed *sidecar* next to the product (see :func:`sidecar_path`).
"""
from __future__ import annotations

import contextlib
import functools
import os

#: sidecar contents
STATUS_OK = "ok"
STATUS_FAILED = "failed"


def sidecar_path(product_path):
    """Return the ok/failed sidecar path of a product (``.fits`` -> ``.status``).

    Parameters
    ----------
    product_path : str
        Path or wildcard pattern of a FITS product.
    """
    root, ext = os.path.splitext(product_path)
    return root + ".status" if ext == ".fits" else product_path + ".status"


def read_step_reason(path):
    """Return the reason line of a ``failed`` sidecar ('' when none is recorded or no sidecar)."""
    if not os.path.exists(path):
        return ""
    with open(path) as fh:
        lines = fh.read().splitlines()
    return lines[1].strip() if len(lines) > 1 else ""


def read_step_status(path):
    """Return ``"ok"``, ``"failed"`` or ``None`` (no sidecar) for a sidecar file.

    Parameters
    ----------
    path : str
    """
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        words = fh.read().split()
    return STATUS_OK if words and words[0] == STATUS_OK else STATUS_FAILED


def write_step_status(path, succeeded, reason=""):
    """Write a sidecar saying ``ok`` or ``failed`` (atomic: temp file renamed into place).

    Parameters
    ----------
    path : str
        Sidecar path (see :func:`sidecar_path`).
    succeeded : bool
        True writes ``ok``, False ``failed``.
    reason : str
        Why it failed: written as the second line (one line, at most 300 characters).

    Returns
    -------
    str
        The status written.
    """
    from .io.util import atomic_path
    status = STATUS_OK if succeeded else STATUS_FAILED
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(status + "\n")
            if reason and not succeeded:
                fh.write(" ".join(str(reason).split())[:300] + "\n")
    return status


def run_absorbing_failure(status_path, function, **kwargs):
    """Call ``function(**kwargs)``; record a *data* failure in a sidecar instead of raising.

    Used by the failure-absorbing arc steps, so that one bad arc cannot stop the
    night: a data error (:func:`desired.errors.data_error_types`) and its
    traceback go to the ``desired.workflow`` logger and the sidecar says
    ``failed`` with the error as its reason.  Any other exception (ImportError,
    MemoryError, a bug...) is an environment or code failure: no sidecar is
    written (a stale one is removed) and the exception propagates, so the job
    fails loudly instead of passing for a bad arc.

    Parameters
    ----------
    status_path : str
        Sidecar to write.
    function : callable
        The step (a ``desired.scripts.<step>.run``).
    **kwargs
        Its keyword arguments.

    Returns
    -------
    str
        ``"ok"`` or ``"failed"``.
    """
    import logging

    from .errors import data_error_types
    if os.path.exists(status_path):
        os.remove(status_path)
    try:
        function(**kwargs)
    except data_error_types() as err:
        logging.getLogger("desired.workflow").exception("data error; recorded in %s", status_path)
        return write_step_status(status_path, False, reason=f"data error: {err}")
    return write_step_status(status_path, True)


@contextlib.contextmanager
def step_logging(logfile, level="INFO"):
    """Route logging to stderr and ``logfile`` for one workflow job; log a failure's traceback.

    Used by the ``workflow/scripts`` adapters: an exception raised inside the
    block is written with its traceback to the job's log, then re-raised so the
    job fails.

    Parameters
    ----------
    logfile : str
        The rule's log file.
    level : str
        Logging level name.

    Yields
    ------
    logging.Logger
        The ``desired.workflow`` logger.
    """
    import logging

    from .cli import setup_logging
    setup_logging(level, logfile)
    log = logging.getLogger("desired.workflow")
    try:
        yield log
    except Exception as err:
        from .errors import is_data_error
        kind = "data error" if is_data_error(err) else "error"
        log.exception("step failed (%s): %s: %s", kind, type(err).__name__, err)
        raise


# ---------------------------------------------------------------- production roots
def production_roots(config):
    """Return the tree roots {raw, calib, redux, truth} of a validated workflow config.

    Parameters
    ----------
    config : dict
        The workflow config after schema validation (defaults filled in).

    Returns
    -------
    dict of str to str
        With ``raw_dir`` null the raw, calib and truth trees are the simulated
        ones under ``sim_dir``.
    """
    sim = config.get("sim_dir", "sim")
    simulating = config.get("raw_dir") is None
    return {
        "raw": os.path.join(sim, "raw") if simulating else config["raw_dir"],
        "calib": config.get("calib_dir") or os.path.join(sim, "calib"),
        "redux": config.get("redux_dir", "prod"),
        "truth": config.get("truth_dir") or os.path.join(sim, "truth"),
    }


# ---------------------------------------------------------------- task names
#: step -> (fields of its task name, in order); psfnight/fiberflatnight-style
#: names are matched longest first, so ``psfnight_...`` is not taken for ``psf``
STEPS = {
    "exposure_table": ("night",),
    "check_raw": ("night", "expid"),
    "fibermap": ("night", "expid"),
    "preproc": ("night", "camera", "expid"),
    "psf": ("night", "camera", "expid"),
    "psfnight": ("night", "camera"),
    "traceshift": ("night", "camera", "expid"),
    "extract": ("night", "camera", "expid"),
    # calibration (rules/calib.smk)
    "fiberflat": ("night", "camera", "expid"),
    "fiberflatnight": ("night", "camera"),
    "sky": ("night", "camera", "expid"),
    # flux calibration (rules/fluxcalib.smk)
    "stdstars": ("night", "spectrograph", "expid"),
    "fluxcalib": ("night", "camera", "expid"),
    "cframe": ("night", "camera", "expid"),
    # healpix stage (rules/spectra.smk, rules/redshift.smk): one task per (survey, program, healpix)
    "spectra": ("survey", "program", "healpix"),
    "coadd": ("survey", "program", "healpix"),
    "redshifts": ("survey", "program", "healpix"),
    "zcatalog": ("survey", "program"),
}

#: steps of the healpix stage (their tasks come from the exposures' fibermaps, see :func:`healpix_tasks`)
HEALPIX_STEPS = ("spectra", "coadd", "redshifts", "zcatalog")

#: step -> product kind of its output in desired.paths.PATTERNS
OUTPUT_KIND = {"exposure_table": "exposure_table", "check_raw": "raw_check", "fibermap": "fibermap", "preproc": "preproc",
               "psf": "psf", "psfnight": "psfnight", "traceshift": "shifted_psf", "extract": "frame",
               "fiberflat": "fiberflat", "fiberflatnight": "fiberflatnight", "sky": "sky",
               "stdstars": "stdstars", "fluxcalib": "fluxcalib", "cframe": "cframe",
               "spectra": "spectra", "coadd": "coadd", "redshifts": "redrock", "zcatalog": "zcatalog"}

#: steps whose declared output is an ok/failed sidecar (only for arcs in the case of preproc)
SIDECAR_STEPS = ("psf",)

#: states of a task, in the order of the status table's columns
STATES = ("done", "ready", "waiting", "running", "failed")


def task_name(step, **fields):
    """Return the task name ``<step>_<field>_...`` (expid zero-padded to 8 digits)."""
    parts = [step]
    for key in STEPS[step]:
        value = fields[key]
        parts.append(f"{int(value):08d}" if key == "expid" else str(value))
    return "_".join(parts)


def parse_task_name(name):
    """Split a task name into (step, fields dict of strings).

    Raises
    ------
    ValueError
        If no step matches or the field count or formats are wrong.
    """
    for step in sorted(STEPS, key=len, reverse=True):
        if not name.startswith(step + "_"):
            continue
        values = name[len(step) + 1:].split("_")
        keys = STEPS[step]
        if len(values) != len(keys):
            raise ValueError(f"task {name!r}: step {step} needs fields {'_'.join(keys)}")
        fields = dict(zip(keys, values))
        if "night" in fields and not (fields["night"].isdigit() and len(fields["night"]) == 8):
            raise ValueError(f"task {name!r}: night must be YYYYMMDD")
        for key in ("survey", "program"):
            if key in fields and not (fields[key].isalnum() and fields[key] == fields[key].lower()):
                raise ValueError(f"task {name!r}: {key} must be lower-case letters and digits")
        if "healpix" in fields and not fields["healpix"].isdigit():
            raise ValueError(f"task {name!r}: healpix must be digits")
        if "expid" in fields:
            if not fields["expid"].isdigit():
                raise ValueError(f"task {name!r}: expid must be digits")
            fields["expid"] = f"{int(fields['expid']):08d}"
        if "camera" in fields and not (len(fields["camera"]) == 2 and fields["camera"][0] in "brz"
                                       and fields["camera"][1].isdigit()):
            raise ValueError(f"task {name!r}: camera must look like b0")
        return step, fields
    raise ValueError(f"task {name!r}: unknown step; known steps: {', '.join(STEPS)}")


def task_output(step, fields, roots, obstype=None):
    """Return the output file of a task (the file to pass to ``--forcerun``).

    Parameters
    ----------
    step : str
    fields : dict
        Name fields (night, camera, expid).
    roots : dict
        From :func:`production_roots`.
    obstype : str, optional
        Exposure OBSTYPE; arcs' preproc output is its sidecar.
    """
    from .paths import findfile, tree
    kind = OUTPUT_KIND[step]
    product = findfile(kind, root=roots[tree(kind)], **fields)
    if step in SIDECAR_STEPS or (step == "preproc" and obstype == "ARC"):
        return sidecar_path(product)
    return product


# ---------------------------------------------------------------- task list and states
def expected_tasks(rows, roots):
    """Return every task of the exposures in ``rows`` with its output, inputs and log.

    Parameters
    ----------
    rows : list of dict
        Exposure-table rows (see :mod:`desired.exposures`), bad ones included:
        an exposure marked bad (LASTSTEP ``ignore``) has one ``check_raw`` task,
        failed from the start, with the table's COMMENTS as its reason.
    roots : dict
        From :func:`production_roots`.

    Returns
    -------
    list of dict, in dependency order
        Keys: step, name, output, inputs (the job's input files as Snakemake sees
        them: upstream outputs and raw/calib files), log, and ``bad`` (the reason
        of a known failure, else '').
    """
    from .exposures import is_bad
    from .paths import findfile
    tasks = []
    redux = roots["redux"]

    def add(step, inputs, obstype=None, bad="", **fields):
        name = task_name(step, **fields)
        log_dir = os.path.join(redux, "logs", step, str(fields["night"]))
        if step == "exposure_table":
            log_dir = os.path.join(redux, "logs", step, str(fields["night"])[:6])
        tasks.append({"step": step, "name": name, "output": task_output(step, fields, roots, obstype),
                      "inputs": list(inputs), "log": os.path.join(log_dir, name + ".log"), "bad": bad})
        return tasks[-1]["output"]

    nights = sorted({int(r["NIGHT"]) for r in rows})
    for night in nights:
        night_rows = [r for r in rows if int(r["NIGHT"]) == night]
        add("exposure_table", [], night=night)
        arcs_by_camera = {}
        cameras = set()
        science = []
        for row in night_rows:
            expid = f"{int(row['EXPID']):08d}"
            raw = findfile("raw", root=roots["raw"], night=night, expid=expid)
            if is_bad(row):
                add("check_raw", [raw], bad=row.get("COMMENTS") or "marked bad in the exposure table",
                    night=night, expid=expid)
                continue
            raw_fibermap = findfile("raw_fibermap", root=roots["raw"], night=night, expid=expid)
            fibermap = None
            if os.path.exists(raw_fibermap) and row["OBSTYPE"] != "ARC":
                fibermap = add("fibermap", [raw_fibermap, raw], night=night, expid=expid)
            for cam in row["CAMERAS"]:
                cameras.add(cam)
                calib = findfile("calib_ccd", root=roots["calib"], camera=cam)
                if row["OBSTYPE"] == "ARC":
                    pre = add("preproc", [raw, calib], obstype="ARC", night=night, camera=cam, expid=expid)
                    nominal = findfile("calib_psf", root=roots["calib"], camera=cam)
                    arcs_by_camera.setdefault(cam, []).append(
                        add("psf", [pre, nominal], night=night, camera=cam, expid=expid))
                elif row["OBSTYPE"] in ("FLAT", "SCIENCE"):
                    pre = add("preproc", [raw, calib] + ([fibermap] if fibermap else []),
                              obstype=row["OBSTYPE"], night=night, camera=cam, expid=expid)
                    science.append((expid, cam, pre, fibermap))
        psfnights = {cam: add("psfnight", arcs_by_camera.get(cam, []), night=night, camera=cam)
                     for cam in sorted(cameras)}
        frames = {}
        for expid, cam, pre, fibermap in science:
            shifted = add("traceshift", [pre, psfnights[cam]], night=night, camera=cam, expid=expid)
            frames[expid, cam] = add("extract", [pre, shifted] + ([fibermap] if fibermap else []),
                                     night=night, camera=cam, expid=expid)
        _add_calib_tasks(add, night, night_rows, frames)
    return tasks


def _add_calib_tasks(add, night, rows, frames):
    """fiberflat per flat camera, fiberflatnight per camera with flats, sky per science camera."""
    obstype = {f"{int(r['EXPID']):08d}": r["OBSTYPE"] for r in rows}
    flats = {}
    for (expid, cam), frame in frames.items():
        if obstype[expid] == "FLAT":
            flats.setdefault(cam, []).append(add("fiberflat", [frame], night=night, camera=cam, expid=expid))
    nightly = {cam: add("fiberflatnight", flats[cam], night=night, camera=cam) for cam in sorted(flats)}
    skies = {}
    for (expid, cam), frame in frames.items():
        if obstype[expid] == "SCIENCE" and cam in nightly:
            skies[expid, cam] = add("sky", [frame, nightly[cam]], night=night, camera=cam, expid=expid)
    _add_fluxcalib_tasks(add, night, frames, nightly, skies)


def _add_fluxcalib_tasks(add, night, frames, nightly, skies):
    """stdstars per spectrograph and science exposure (its b, r, z), fluxcalib and cframe per camera."""
    by_spectro = {}
    for (expid, cam) in sorted(skies):
        by_spectro.setdefault((expid, cam[1:]), []).append(cam)
    for (expid, spectro), cams in sorted(by_spectro.items()):
        inputs = ([frames[expid, c] for c in cams] + [nightly[c] for c in cams] + [skies[expid, c] for c in cams])
        models = add("stdstars", inputs, night=night, spectrograph=spectro, expid=expid)
        for cam in cams:
            common = [frames[expid, cam], nightly[cam], skies[expid, cam]]
            calib = add("fluxcalib", common + [models], night=night, camera=cam, expid=expid)
            add("cframe", common + [calib], night=night, camera=cam, expid=expid)


def in_workdir(workdir, path):
    """``path`` as seen from the current directory: itself when absolute, else joined to ``workdir``."""
    return path if os.path.isabs(path) else os.path.join(workdir, path)


def healpix_tasks(rows, roots, healpix, defaults, workdir="."):
    """Tasks of the healpix stage: spectra, coadd and redshifts per pixel, the zcatalog per survey/program.

    The pixels are found as the workflow finds them (rules/common_spectra.smk): from each good
    science exposure's fibermap (raw fibermap, raw fiberassign, else production fibermap), the
    (survey, program, healpix) groups it feeds and the spectrographs feeding each.

    Parameters
    ----------
    rows : list of dict
        Exposure-table rows (bad ones and non-science ones are skipped).
    roots : dict
        From :func:`production_roots`.
    healpix : dict
        ``{"nside": int, "nest": bool}`` (config ``healpix``).
    defaults : tuple of str
        (survey, program) for exposures whose fibermap names none (config ``spectra``).
    workdir : str
        Directory the roots are relative to.

    Returns
    -------
    list of dict
        As :func:`expected_tasks`, in dependency order (after the cframes they need).
    """
    from .exposures import is_bad
    from .grouping import exposure_healpix_groups, healpix_members
    from .io.spectra import find_exposure_fibermap, read_fibermap_coordinates
    from .paths import findfile

    at = functools.partial(in_workdir, workdir)

    exposures = []
    for row in rows:
        if is_bad(row) or row["OBSTYPE"] != "SCIENCE":
            continue
        night, expid = int(row["NIGHT"]), int(row["EXPID"])
        fmfile = find_exposure_fibermap(at(findfile("raw_fibermap", root=roots["raw"], night=night, expid=expid)),
                                        at(findfile("fibermap", root=roots["redux"], night=night, expid=expid)))
        if fmfile is None:
            continue
        table, header = read_fibermap_coordinates(fmfile)
        groups = exposure_healpix_groups(table["TARGET_RA"], table["TARGET_DEC"], table["FIBER"], header,
                                         nside=healpix["nside"], nest=healpix["nest"],
                                         default_survey=defaults[0], default_program=defaults[1])
        exposures.append((night, expid, row["CAMERAS"], groups))
    members = {group: [findfile("cframe", root=roots["redux"], night=n, expid=e, camera=c) for n, e, c in cams]
               for group, cams in healpix_members(exposures).items()}
    tasks, redrock = [], {}
    logs = os.path.join(roots["redux"], "logs")

    def add(step, inputs, **fields):
        # the rules' log_pattern(step, "survey", "program"[, "pixgroup", "healpix"])
        parts = [fields["survey"], fields["program"]]
        if "healpix" in fields:
            parts += [int(fields["healpix"]) // 100, fields["healpix"]]
        tasks.append({"step": step, "name": task_name(step, **fields), "output": task_output(step, fields, roots),
                      "inputs": list(inputs), "bad": "",
                      "log": os.path.join(logs, step, "all", "_".join(map(str, [step, *parts])) + ".log")})
        return tasks[-1]["output"]

    for (survey, program, pix), cframes in members.items():
        fields = dict(survey=survey, program=program, healpix=pix)
        spectra = add("spectra", sorted(set(cframes)), **fields)
        coadd = add("coadd", [spectra], **fields)
        redrock.setdefault((survey, program), []).append(add("redshifts", [coadd], **fields))
    for (survey, program), inputs in sorted(redrock.items()):
        add("zcatalog", inputs, survey=survey, program=program)
    return tasks


def incomplete_outputs(workdir="."):
    """Return the set of normalised paths Snakemake marks incomplete under ``workdir/.snakemake``."""
    import base64
    top = os.path.join(workdir, ".snakemake", "incomplete")
    out = set()
    if not os.path.isdir(top):
        return out
    for dirpath, _, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        prefix = "" if rel == "." else "".join(part.lstrip("@") for part in rel.split(os.sep))
        for name in filenames:
            if name == "migration_underway":
                continue
            try:
                out.add(os.path.normpath(base64.urlsafe_b64decode(prefix + name).decode()))
            except (ValueError, UnicodeDecodeError):
                continue
    return out


def snakemake_running(workdir="."):
    """True when a Snakemake process holds a lock on ``workdir``."""
    locks = os.path.join(workdir, ".snakemake", "locks")
    return os.path.isdir(locks) and any(name.endswith(".lock") for name in os.listdir(locks))


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def task_states(tasks, workdir=".", incomplete=None, running=None):
    """Return {task name: state} for tasks in dependency order (see :func:`expected_tasks`).

    A task is *done* only when its output exists, is not marked incomplete, (for a
    sidecar) says ok, is at least as new as every input, and every upstream task
    is settled (done; for a sidecar input, done or failed: the arc chain absorbs
    data errors).  An output that exists but fails these tests is stale: it counts
    as ready or waiting, never as done.  *failed*: a known bad exposure, a sidecar
    saying failed, or a missing/incomplete output with a log while its inputs are
    settled and no Snakemake run is active.  *running*: marked incomplete while a
    run holds the lock.  *ready*: every input settled; *waiting*: otherwise.
    """
    at = functools.partial(in_workdir, workdir)

    incomplete = incomplete_outputs(workdir) if incomplete is None else incomplete
    running = snakemake_running(workdir) if running is None else running
    by_output = {}
    states = {}
    for task in tasks:
        state = _task_state(task, at, by_output, incomplete, running)
        states[task["name"]] = by_output[os.path.normpath(task["output"])] = state
    return states


def _settled(path, by_output, at):
    """True when an input is usable: its producing task is done (sidecar: done or failed), or, for
    a file no task produces (raw, calib), it exists."""
    state = by_output.get(os.path.normpath(path))
    if state is None:
        return os.path.exists(at(path))
    return state == "done" or (path.endswith(".status") and state == "failed" and os.path.exists(at(path)))


def _task_state(task, at, by_output, incomplete, running):
    if task.get("bad"):
        return "failed"
    output = task["output"]
    if os.path.normpath(output) in incomplete:
        return "running" if running else "failed"
    settled = all(_settled(p, by_output, at) for p in task["inputs"])
    mtime = _mtime(at(output))
    if mtime is not None:
        if output.endswith(".status") and read_step_status(at(output)) != STATUS_OK:
            return "failed"
        fresh = all((_mtime(at(p)) or 0) <= mtime for p in task["inputs"])
        if settled and fresh:
            return "done"
        return "ready" if settled else "waiting"           # stale: exists but is not trusted
    if not settled:
        return "waiting"
    if os.path.exists(at(task["log"])) and not running:
        return "failed"
    return "ready"


def task_state(task, workdir=".", incomplete=None, running=None):
    """Return the state of one task, judged alone (its upstream tasks unknown: inputs must exist).

    See :func:`task_states` for the states; use that with the whole task list to
    take upstream failures and staleness into account.
    """
    return task_states([task], workdir, incomplete, running)[task["name"]]


def status_table(tasks, workdir=".", states=None):
    """Count tasks per step and state.

    Returns
    -------
    dict of str to dict of str to int
        step -> state -> count, steps in pipeline order.
    """
    states = task_states(tasks, workdir) if states is None else states
    table = {}
    for task in tasks:
        counts = table.setdefault(task["step"], dict.fromkeys(STATES, 0))
        counts[states[task["name"]]] += 1
    return {step: table[step] for step in STEPS if step in table}


def failure_line(task, workdir="."):
    """One line saying why a failed task failed: the known reason, the sidecar's, or the log's first error line."""
    at = functools.partial(in_workdir, workdir)
    if task.get("bad"):
        return task["bad"]
    if task["output"].endswith(".status"):
        reason = read_step_reason(at(task["output"]))
        if reason:
            return reason
    log = at(task["log"])
    if not os.path.exists(log):
        return "(no log; see the Snakemake output of the run)"
    with open(log, errors="replace") as fh:
        lines = [line.strip() for line in fh if line.strip()]
    if not lines:
        return f"(empty log {task['log']}: the job failed before the step started; see the Snakemake output)"
    import re
    stamp = re.compile(r"^\d{4}-\d\d-\d\d [\d:,.]+ ERROR [\w.]+: ")      # our logging prefix
    for line in lines:
        if " ERROR " in line or line.startswith(("Error", "ERROR")) or "Error:" in line:
            return stamp.sub("", line)[:300]
    return lines[0][:300]


def invalidate_stale(tasks, workdir=".", failed_outputs=(), rows=(), roots=None, dry_run=False):
    """Remove products that must not be trusted; return the paths removed.

    Removed: every existing output downstream of a job that failed (its output in
    ``failed_outputs``, as Snakemake reports them), through edges that do not
    absorb failures (a *recorded* data failure of an arc, its sidecar saying
    ``failed``, is absorbed by psfnight, which Snakemake rebuilds because its input
    sidecar changed; a failed arc job without a sidecar is not), and every
    product of an exposure marked bad in the exposure table (files in its
    preproc and exposures directories).  Raw data and logs are kept.  An output
    that is merely missing (never made, or deleted to save space) taints nothing.

    Parameters
    ----------
    tasks : list of dict
        From :func:`expected_tasks` (dependency order).
    workdir : str
    failed_outputs : iterable of str
        Output files of the jobs that failed.
    rows : list of dict
        Exposure-table rows (bad ones are looked for).
    roots : dict, optional
        From :func:`production_roots` (needed with ``rows``).
    dry_run : bool
        Only return what would be removed.
    """
    from .exposures import is_bad
    from .paths import findfile

    at = functools.partial(in_workdir, workdir)

    tainted = {os.path.normpath(p) for p in failed_outputs}
    removed = []
    for task in tasks:
        output = os.path.normpath(task["output"])
        if output in tainted:
            continue
        if any(os.path.normpath(p) in tainted for p in task["inputs"]):
            tainted.add(output)
            if os.path.exists(at(output)):
                removed.append(task["output"])
    for row in rows:
        if not is_bad(row):
            continue
        fields = {"night": int(row["NIGHT"]), "expid": int(row["EXPID"]), "camera": "b0"}
        for kind in ("preproc", "frame"):
            directory = at(os.path.dirname(findfile(kind, root=roots["redux"], **fields)))
            if os.path.isdir(directory):
                removed.extend(os.path.join(directory, name) for name in sorted(os.listdir(directory))
                               if os.path.isfile(os.path.join(directory, name)))
    removed += [p[:-len(".status")] + ".fits" for p in removed
                if p.endswith(".status") and os.path.exists(at(p[:-len(".status")] + ".fits"))]
    if not dry_run:
        for path in removed:
            if os.path.exists(at(path)):
                os.remove(at(path))
    return removed


def format_status_table(table):
    """Return the status table as fixed-width text (desi_pipe ``top`` style)."""
    lines = [f"{'step':<16}" + "".join(f"{s:>9}" for s in STATES) + f"{'total':>9}"]
    lines.append("-" * len(lines[0]))
    for step, counts in table.items():
        lines.append(f"{step:<16}" + "".join(f"{counts[s]:>9d}" for s in STATES) + f"{sum(counts.values()):>9d}")
    return "\n".join(lines)


def find_schema(configfile, directory="."):
    """Return the workflow config schema: ``config/config.schema.yaml`` of the working directory, else
    the one next to ``configfile``, else the one of the repository this package was installed from.

    Raises
    ------
    FileNotFoundError
        If none exists (the message says to pass ``--schema``).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(directory, "config", "config.schema.yaml"),
                  os.path.join(os.path.dirname(os.path.abspath(configfile)), "config.schema.yaml"),
                  os.path.join(here, "..", "..", "config", "config.schema.yaml")]
    for candidate in candidates:
        if os.path.exists(candidate):
            return os.path.normpath(candidate)
    raise FileNotFoundError(f"no config/config.schema.yaml found (looked in {', '.join(candidates)}); "
                            "pass --schema")


def validation_message(err):
    """Short text of a config validation error (the jsonschema message and where), not the whole schema."""
    cause = err.__context__ if hasattr(err.__context__, "absolute_path") else err
    if hasattr(cause, "message") and hasattr(cause, "absolute_path"):
        where = "/".join(str(p) for p in cause.absolute_path) or "top level"
        return f"{cause.message} (at {where})"
    lines = [line for line in str(err).splitlines() if line.startswith("ValidationError")]
    return (lines or str(err).splitlines() or [type(err).__name__])[0]


def validate_config(config, schemafile, name="config"):
    """Validate a workflow config (filling defaults) with Snakemake's validator; raise a short ValueError.

    Raises
    ------
    ValueError
        ``<name>: invalid workflow config: <message> (at <key path>)``.
    """
    import logging

    from snakemake.utils import validate
    quiet = logging.getLogger("snakemake.logging")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)       # snakemake's validate logs the whole schema on failure
    try:
        validate(config, schemafile)
    except Exception as err:
        raise ValueError(f"{name}: invalid workflow config: {validation_message(err)}") from None
    finally:
        quiet.setLevel(level)
    return config


def load_config(configfile, schemafile=None, overrides=None, directory="."):
    """Read a workflow config the way the Snakefile does, validate it and fill defaults.

    Like Snakemake, ``config/config.yaml`` of the working directory (when it
    exists and is not ``configfile`` itself) is read first and ``configfile`` is
    layered over it (nested keys merged).

    Parameters
    ----------
    configfile : str
    schemafile : str, optional
        Default: :func:`find_schema`.
    overrides : dict, optional
        Top-level keys replacing the file's (like ``snakemake --config``).
    directory : str
        Snakemake working directory.

    Raises
    ------
    ValueError
        If the config does not satisfy the schema (message names the file).
    FileNotFoundError
        If the config file does not exist.
    """
    import yaml
    if not os.path.exists(configfile):
        raise FileNotFoundError(f"{configfile}: config file does not exist")
    schemafile = schemafile or find_schema(configfile, directory)
    config = {}
    default = os.path.join(directory, "config", "config.yaml")
    if os.path.exists(default) and os.path.abspath(default) != os.path.abspath(configfile):
        with open(default) as fh:
            _merge(config, yaml.safe_load(fh) or {})
    with open(configfile) as fh:
        _merge(config, yaml.safe_load(fh) or {})
    config.update(overrides or {})
    return validate_config(config, schemafile, name=configfile)


def _merge(base, new):
    """Deep-merge dict ``new`` into ``base`` (Snakemake's update_config)."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def production_tasks(config, workdir="."):
    """Every task of the production from its exposure tables (nights whose table exists).

    Returns
    -------
    tasks : list of dict
        See :func:`expected_tasks`.
    missing_nights : list of int
        Configured nights with neither an exposure table nor a raw directory
        (a night without a table but with raw files is scanned, as the workflow does).
    """
    from .exposures import list_nights, read_exposure_table, select_rows
    from .paths import findfile
    roots = production_roots(config)
    if config.get("nights"):
        nights = [int(n) for n in config["nights"]]
    elif config.get("raw_dir") is None:
        nights = [int(config["simulate"]["night"])]
    else:
        raw = roots["raw"] if os.path.isabs(roots["raw"]) else os.path.join(workdir, roots["raw"])
        nights = list_nights(raw)
    rows, missing = [], []
    for night in nights:
        table = findfile("exposure_table", root=roots["redux"], night=night)
        table = table if os.path.isabs(table) else os.path.join(workdir, table)
        raw_night = os.path.join(roots["raw"] if os.path.isabs(roots["raw"]) else os.path.join(workdir, roots["raw"]),
                                 str(night))
        if os.path.exists(table):
            table_rows = read_exposure_table(table)
        elif os.path.isdir(raw_night):            # not written yet (or its job failed): scan as the workflow does
            from .scripts.exposure_table import table_rows as scan
            override = config.get("exposure_table")
            if override and not os.path.isabs(override):
                override = os.path.join(workdir, override)
            table_rows = scan(os.path.dirname(raw_night), night, override)
        else:
            missing.append(night)
            continue
        for bad in (False, True):
            rows.extend(select_rows(table_rows, night=night, cameras=config.get("cameras"), bad=bad))
    rows.sort(key=lambda r: (int(r["NIGHT"]), int(r["EXPID"])))
    tasks = expected_tasks(rows, roots)
    spectra = config.get("spectra", {})
    if config.get("stages", "all") != "night" and "healpix" in spectra.get("groupings", ["healpix"]):
        healpix = config.get("healpix", {"nside": 64, "nest": True})
        tasks += healpix_tasks(rows, roots, healpix, (spectra.get("default_survey", "main"),
                                                      spectra.get("default_program", "other")), workdir)
    return tasks, missing
