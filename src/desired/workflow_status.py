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


def write_step_status(path, succeeded):
    """Write a sidecar saying ``ok`` or ``failed`` (atomic: temp file renamed into place).

    Parameters
    ----------
    path : str
        Sidecar path (see :func:`sidecar_path`).
    succeeded : bool
        True writes ``ok``, False ``failed``.

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
    return status


def run_absorbing_failure(status_path, function, **kwargs):
    """Call ``function(**kwargs)``; record ok/failed in a sidecar instead of raising.

    Used by the failure-absorbing arc steps, so that one bad arc cannot stop the
    night: the exception and its traceback go to the ``desired.workflow`` logger
    and the sidecar says ``failed``.

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
    try:
        function(**kwargs)
    except Exception:
        logging.getLogger("desired.workflow").exception("step failed; recorded in %s", status_path)
        return write_step_status(status_path, False)
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
    except Exception:
        log.exception("step failed")
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
}

#: step -> product kind of its output in desired.paths.PATTERNS
OUTPUT_KIND = {"exposure_table": "exposure_table", "fibermap": "fibermap", "preproc": "preproc",
               "psf": "psf", "psfnight": "psfnight", "traceshift": "shifted_psf", "extract": "frame",
               "fiberflat": "fiberflat", "fiberflatnight": "fiberflatnight", "sky": "sky"}

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
        if not (fields["night"].isdigit() and len(fields["night"]) == 8):
            raise ValueError(f"task {name!r}: night must be YYYYMMDD")
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
        Exposure-table rows (see :mod:`desired.exposures`).
    roots : dict
        From :func:`production_roots`.

    Returns
    -------
    list of dict
        Keys: step, name, output, inputs (outputs of the upstream tasks), log.
    """
    from .paths import findfile
    tasks = []
    redux = roots["redux"]

    def add(step, inputs, obstype=None, **fields):
        name = task_name(step, **fields)
        log_dir = os.path.join(redux, "logs", step, str(fields["night"]))
        if step == "exposure_table":
            log_dir = os.path.join(redux, "logs", step, str(fields["night"])[:6])
        tasks.append({"step": step, "name": name, "output": task_output(step, fields, roots, obstype),
                      "inputs": list(inputs), "log": os.path.join(log_dir, name + ".log")})
        return tasks[-1]["output"]

    nights = sorted({int(r["NIGHT"]) for r in rows})
    for night in nights:
        night_rows = [r for r in rows if int(r["NIGHT"]) == night]
        table = add("exposure_table", [], night=night)
        arcs_by_camera = {}
        cameras = set()
        science = []
        for row in night_rows:
            expid = f"{int(row['EXPID']):08d}"
            raw_fibermap = findfile("raw_fibermap", root=roots["raw"], night=night, expid=expid)
            fibermap = None
            if os.path.exists(raw_fibermap) and row["OBSTYPE"] != "ARC":
                fibermap = add("fibermap", [table], night=night, expid=expid)
            for cam in row["CAMERAS"]:
                cameras.add(cam)
                pre = add("preproc", [table], obstype=row["OBSTYPE"], night=night, camera=cam, expid=expid)
                if row["OBSTYPE"] == "ARC":
                    arcs_by_camera.setdefault(cam, []).append(
                        add("psf", [pre], night=night, camera=cam, expid=expid))
                elif row["OBSTYPE"] in ("FLAT", "SCIENCE"):
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
    for (expid, cam), frame in frames.items():
        if obstype[expid] == "SCIENCE" and cam in nightly:
            add("sky", [frame, nightly[cam]], night=night, camera=cam, expid=expid)


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


def task_state(task, workdir=".", incomplete=None, running=None):
    """Return the state of one task: done, ready, waiting, running or failed.

    done: output exists, is not marked incomplete and (for sidecars) says ok;
    failed: sidecar says failed, or an incomplete/absent output with a log while
    no Snakemake run is active; running: marked incomplete while a run holds the
    lock; ready: every input exists (sidecar inputs say ok); waiting: otherwise.
    """
    def at(p):
        return p if os.path.isabs(p) else os.path.join(workdir, p)

    incomplete = incomplete_outputs(workdir) if incomplete is None else incomplete
    running = snakemake_running(workdir) if running is None else running
    output = task["output"]
    marked = os.path.normpath(output) in incomplete
    if marked:
        return "running" if running else "failed"
    if os.path.exists(at(output)):
        if output.endswith(".status"):
            return "done" if read_step_status(at(output)) == STATUS_OK else "failed"
        return "done"
    if os.path.exists(at(task["log"])) and not running:
        return "failed"
    for inp in task["inputs"]:
        if not os.path.exists(at(inp)):
            return "waiting"
        if inp.endswith(".status") and read_step_status(at(inp)) != STATUS_OK:
            return "waiting"
    return "ready"


def status_table(tasks, workdir="."):
    """Count tasks per step and state.

    Returns
    -------
    dict of str to dict of str to int
        step -> state -> count, steps in pipeline order.
    """
    incomplete = incomplete_outputs(workdir)
    running = snakemake_running(workdir)
    table = {}
    for task in tasks:
        counts = table.setdefault(task["step"], dict.fromkeys(STATES, 0))
        counts[task_state(task, workdir, incomplete, running)] += 1
    return {step: table[step] for step in STEPS if step in table}


def format_status_table(table):
    """Return the status table as fixed-width text (desi_pipe ``top`` style)."""
    lines = [f"{'step':<16}" + "".join(f"{s:>9}" for s in STATES) + f"{'total':>9}"]
    lines.append("-" * len(lines[0]))
    for step, counts in table.items():
        lines.append(f"{step:<16}" + "".join(f"{counts[s]:>9d}" for s in STATES) + f"{sum(counts.values()):>9d}")
    return "\n".join(lines)


def load_config(configfile, schemafile, overrides=None):
    """Read a workflow config yaml, apply overrides, validate it and fill defaults.

    Parameters
    ----------
    configfile, schemafile : str
    overrides : dict, optional
        Top-level keys replacing the file's (like ``snakemake --config``).

    Raises
    ------
    ValueError
        If the config does not satisfy the schema (message names the file).
    """
    import yaml
    from snakemake.utils import validate
    with open(configfile) as fh:
        config = yaml.safe_load(fh) or {}
    config.update(overrides or {})
    try:
        validate(config, schemafile)
    except Exception as err:
        raise ValueError(f"{configfile}: invalid workflow config: {err}") from None
    return config


def production_tasks(config, workdir="."):
    """Every task of the production from its exposure tables (nights whose table exists).

    Returns
    -------
    tasks : list of dict
        See :func:`expected_tasks`.
    missing_nights : list of int
        Configured nights whose exposure table does not exist yet.
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
        if not os.path.exists(table):
            missing.append(night)
            continue
        rows.extend(select_rows(read_exposure_table(table), night=night, cameras=config.get("cameras")))
    return expected_tasks(rows, roots), missing
