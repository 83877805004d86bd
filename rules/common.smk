# Helpers shared by every stage: roots, path patterns from desired.paths.PATTERNS,
# exposure discovery (raw headers scanned while the Snakefile is parsed; the
# exposure_table checkpoint only for a simulated night that does not exist yet),
# log/benchmark paths, the command that runs `desired` (DESIRED), the MPI launcher
# and the registry of `rule all` targets.
import os
import shlex
import sys
from types import SimpleNamespace

from desired import paths as desired_paths
from desired.errors import EXIT_DATA_ERROR
from desired.exposures import list_nights, read_exposure_table, select_rows
from desired.scripts.exposure_table import table_rows
from desired.workflow_status import (incomplete_outputs, production_roots, read_step_status,
                                     sidecar_path, snakemake_running)
from snakemake.logging import logger

#: how shell rules start a step: the interpreter Snakemake runs in, never a `desired` found on PATH
DESIRED = f"{shlex.quote(sys.executable)} -m desired"

SIMULATING = config["raw_dir"] is None
SIM_DIR = config["sim_dir"]
ROOTS = production_roots(config)
REDUX = ROOTS["redux"]
LOGS = os.path.join(REDUX, "logs")
BENCHMARKS = os.path.join(REDUX, "benchmarks")

wildcard_constraints:
    night=r"\d{8}",
    month=r"\d{6}",
    expid=r"\d{8}",
    camera=r"[brz]\d",


def pattern(kind):
    """Wildcard pattern of product `kind` (its tree's root joined with the PATTERNS entry)."""
    return os.path.join(ROOTS[desired_paths.tree(kind)], desired_paths.pattern(kind))


def status_pattern(kind):
    """Wildcard pattern of the ok/failed sidecar of product `kind` (failure-absorbing rules)."""
    return sidecar_path(pattern(kind))


def path(kind, **fields):
    """Path of one product; fields are wildcard strings or ints (expid is zero-padded)."""
    return desired_paths.findfile(kind, root=ROOTS[desired_paths.tree(kind)], **fields)


def log_pattern(step, *fields):
    """Per-task log: {redux}/logs/{step}/{night}/{step}_{field1}_{field2}....log."""
    name = "_".join([step] + ["{%s}" % f for f in fields])
    night_dir = "{night}" if "night" in fields else "all"
    return os.path.join(LOGS, step, night_dir, f"{name}.log")


def benchmark_pattern(step, *fields):
    """Per-task benchmark tsv, next to the logs under {redux}/benchmarks."""
    name = "_".join([step] + ["{%s}" % f for f in fields])
    night_dir = "{night}" if "night" in fields else "all"
    return os.path.join(BENCHMARKS, step, night_dir, f"{name}.tsv")


def tolerant(command, status="{output.status}", log="{log}"):
    """Shell snippet running `command`, recording a *data* failure in a sidecar; other failures fail the job.

    Used by psf (a shell-command step, started under srun); the script rules use
    desired.workflow_status.run_absorbing_failure instead.  `desired STEP` exits
    65 (desired.errors.EXIT_DATA_ERROR) when its input data are bad: then the
    sidecar says `failed` with the log's first ERROR line as reason, the job
    succeeds, and psfnight (a barrier over the night's arcs) combines the arcs
    whose sidecar says ok.  Any other exit status (127 command not found, 1 an
    import error or a bug, 137 killed/out of memory...) is an environment failure:
    no sidecar is written and the job fails with that status.
    """
    return ("rm -f {st}; rc=0; {cmd} || rc=$?; "
            "if [ $rc -eq 0 ]; then echo ok > {st}.tmp; "
            "elif [ $rc -eq {data} ]; then "
            "{{{{ echo failed; echo \"data error: $({{{{ grep -m1 ' ERROR ' {log} || tail -n1 {log}; }}}} | cut -c1-250)\"; }}}} > {st}.tmp; "
            "echo \"data error (exit {data}) recorded in {st}\" >&2; "
            "else echo \"environment or code failure (exit $rc), not recorded as bad data; see {log}\" >&2; "
            "exit $rc; fi; mv {st}.tmp {st}").format(cmd=command, st=status, log=log, data=EXIT_DATA_ERROR)


# ---------------------------------------------------------------- exposures
def configured_nights():
    """Nights to process: config nights, else the simulated night, else every night of the raw tree."""
    if config["nights"]:
        return [int(n) for n in config["nights"]]
    if SIMULATING:
        return [int(config["simulate"]["night"])]
    return list_nights(ROOTS["raw"])


NIGHTS = configured_nights()


def exposure_table_path(night):
    return path("exposure_table", night=str(night))


_ROWS = {}


def scanned_rows(night):
    """Every row (bad ones too) of the night known at parse time, or None while the raw night does not exist.

    The night's exposure table is read when it is at least as new as every raw
    file (and the override csv); otherwise the raw headers are scanned with the
    same function the exposure_table rule uses.  None (a simulated night not yet
    simulated, or no raw directory): the caller waits for the checkpoint.
    """
    night = str(night)
    if night in _ROWS:
        return _ROWS[night]
    if SIMULATING and not os.path.exists(os.path.join(SIM_DIR, f"simulate-{night}.done")):
        return None
    if not os.path.isdir(os.path.join(ROOTS["raw"], night)):
        return None
    table = exposure_table_path(night)
    sources = [os.path.getmtime(p) for p in exposure_table_inputs(SimpleNamespace(night=night))
               if os.path.exists(p)]
    if os.path.exists(table) and os.path.getmtime(table) >= max(sources, default=0):
        rows = read_exposure_table(table)
    else:
        rows = table_rows(ROOTS["raw"], int(night), config["exposure_table"])
    _ROWS[night] = rows
    return rows


def night_rows(night, bad=False, obstypes=None, camera=None):
    """Rows of the night (good ones, or only the bad ones with bad=True), restricted to the configured cameras."""
    night = str(night)
    rows = scanned_rows(night)
    if rows is None:
        table = checkpoints.exposure_table.get(night=night, month=night[:6]).output.table
        rows = read_exposure_table(table)
    cameras = config["cameras"]
    if camera is not None:
        cameras = [camera] if cameras is None or camera in cameras else []
    return select_rows(rows, night=int(night), obstypes=obstypes, cameras=cameras, bad=bad)


def exposures(night, obstypes=None, camera=None):
    """Rows of the night's exposures to process (those marked bad, LASTSTEP ignore, are left out)."""
    return night_rows(night, obstypes=obstypes, camera=camera)


def bad_exposures(night):
    """Rows of the night's exposures marked bad (unreadable raw file, or an override's LASTSTEP ignore)."""
    return night_rows(night, bad=True)


def exposure_tasks(night, obstypes):
    """(expid string, camera) of every camera of every exposure of the given obstypes."""
    return [(f"{row['EXPID']:08d}", cam) for row in exposures(night, obstypes) for cam in row["CAMERAS"]]


def night_cameras(night):
    """Cameras present in any exposure of the night."""
    return sorted({cam for row in exposures(night) for cam in row["CAMERAS"]})


# ---------------------------------------------------------------- MPI
def mpi_launch(wildcards, resources):
    """Launcher prefix of an MPI-capable step: '' locally, '{mpi} -N {nodes} -n {tasks}' under SLURM.

    With launcher `auto` a job is launched under MPI when Snakemake submits it to
    SLURM; in a dry run (Snakemake then hides the executor) a job whose
    resources carry a SLURM partition (the SLURM profile sets one) shows the
    srun command it would really run.
    """
    mode = config["mpi"]["launcher"]
    if mode == "none" or not getattr(resources, "mpi", ""):   # one task: a plain (non-MPI) job
        return ""
    if mode == "auto":
        plugin = workflow.executor_plugin
        name = getattr(plugin, "name", "") or ""
        # In a dry run Snakemake hides the executor: a job whose resources carry a SLURM
        # partition (the SLURM profile sets one) shows the srun command it would run.
        # The SLURM job itself runs MPI rules (and groups) through one more snakemake
        # process (`--mode remote`, local executor): it is in a SLURM job when the
        # slurm executor submitted it, which SLURM_JOB_ID tells.
        dry = getattr(plugin, "common_settings", None) is not None and plugin.common_settings.dryrun_exec
        in_slurm_job = workflow.remote_exec and "SLURM_JOB_ID" in os.environ
        if not (name.startswith("slurm") or in_slurm_job or (dry and "slurm_partition" in resources.keys())):
            return ""
        return f"{resources.mpi} -N {resources.nodes} -n {resources.tasks}"
    return f"{mode} -n {resources.tasks}"


def mpi_flag(wildcards, resources):
    """'--mpi' when the step runs under an MPI launcher (ranks split the work), else ''."""
    return "--mpi" if mpi_launch(wildcards, resources) else ""


# ---------------------------------------------------------------- targets
#: functions night -> list of paths; each stage registers what the all-target builds
TARGETS = []


def register_targets(function):
    """Add a target function (night -> list of output paths) to the all-target."""
    TARGETS.append(function)
    return function


def all_targets(wildcards):
    """Inputs of the all-target: every registered target of every configured night (of config `stages`)."""
    remove_incomplete_outputs()
    out = []
    for night in NIGHTS:
        for function in TARGETS:
            out.extend(stage_targets(function, night))
    return out


# ---------------------------------------------------------------- survey scale: config `stages`
#: all | night (the per-night half: raw -> cframe, exposure QA) | healpix (spectra -> catalogs of every night)
STAGES = config["stages"]
#: registered target functions of the healpix half (products spanning nights; the others are per night)
HEALPIX_TARGET_FUNCTIONS = ("spectra_targets", "zcatalog_targets")
STAGE_CHECK = []


def stage_targets(function, night):
    """Targets of one registered function for one night, restricted to the half config `stages` names.

    A split run (stages night or healpix) leaves out the production's QA report:
    its inputs are every product of every night.
    """
    if STAGES != "all" and not STAGE_CHECK:                 # a renamed stage function would move halves
        STAGE_CHECK.append(True)
        missing = set(HEALPIX_TARGET_FUNCTIONS) - {f.__name__ for f in TARGETS}
        if missing:
            logger.warning(f"stages {STAGES}: no registered target function {sorted(missing)}; "
                           "update HEALPIX_TARGET_FUNCTIONS in rules/common.smk")
    healpix = function.__name__ in HEALPIX_TARGET_FUNCTIONS
    if (STAGES == "night" and healpix) or (STAGES == "healpix" and not healpix):
        return []
    out = function(night)
    return out if STAGES == "all" else [p for p in out if p != path("qa_report")]


# ---------------------------------------------------------------- stage helpers: exposures.smk
def exposure_table_inputs(wildcards):
    """The night's raw files (a new or changed file reruns the scan), and the simulation marker of a simulated night."""
    inputs = []
    if SIMULATING:
        inputs.append(os.path.join(SIM_DIR, f"simulate-{wildcards.night}.done"))
    night_dir = os.path.join(ROOTS["raw"], wildcards.night)
    if os.path.isdir(night_dir):           # also when simulated: a raw file changed later rescans the night
        for name in sorted(os.listdir(night_dir)):
            raw = path("raw", night=wildcards.night, expid=name)
            if name.isdigit() and os.path.exists(raw):
                inputs.append(raw)
    if config["exposure_table"]:
        inputs.append(config["exposure_table"])
    return inputs


@register_targets
def exposure_targets(night):
    """The night's exposure table, and the raw check (a failing job) of every exposure marked bad."""
    return [exposure_table_path(night)] + [path("raw_check", night=night, expid=row["EXPID"])
                                           for row in bad_exposures(night)]


# ---------------------------------------------------------------- preproc.smk
def fibermap_input(wildcards):
    """The production fibermap when the raw tree has one for this exposure."""
    raw = path("raw_fibermap", night=wildcards.night, expid=wildcards.expid)
    return [path("fibermap", night=wildcards.night, expid=wildcards.expid)] if os.path.exists(raw) else []


@register_targets
def preproc_targets(night):
    """Preproc images of every flat and science camera (arcs are reached through psf)."""
    return [path("preproc", night=night, expid=e, camera=c) for e, c in exposure_tasks(night, ["FLAT", "SCIENCE"])]


# ---------------------------------------------------------------- psf.smk
def psfnight_inputs(wildcards):
    """The ok/failed sidecars of the night's arc PSF fits of this camera (the adapter combines the ok ones)."""
    return [status_path(kind="psf", night=wildcards.night, expid=e, camera=c)
            for e, c in exposure_tasks(wildcards.night, ["ARC"]) if c == wildcards.camera]


def psfnight_dropped(wildcards):
    """[name, reason] of the night's arcs marked bad in the exposure table (never fitted), for psfnight's record."""
    return [[f"desi-{row['EXPID']:08d}.fits.fz", row["COMMENTS"] or "marked bad in the exposure table"]
            for row in bad_exposures(wildcards.night)
            if row["OBSTYPE"] == "ARC" and (not row["CAMERAS"] or wildcards.camera in row["CAMERAS"])]


def status_path(kind, **fields):
    """Path of the ok/failed sidecar of one product."""
    return sidecar_path(path(kind, **fields))


def psfnight_fallback(wildcards):
    """The configured fallback PSF of this night/camera, or None (the adapter fails clearly then)."""
    fallback = config["psfnight"]["fallback_psf"]
    return fallback.format(camera=wildcards.camera, night=wildcards.night) if fallback else None


def traceshift_sky_template(wildcards):
    """Night-sky template for the y shifts: the configured one, else the calib tree's when present, else None."""
    configured = config["traceshift"]["sky_template"]
    if configured:
        return configured
    calib = path("calib_sky_template")
    return calib if os.path.exists(calib) else None


@register_targets
def psf_targets(night):
    """Every arc's PSF sidecar, and psfnight of every camera of the night."""
    arcs = [status_path for status_path in
            (sidecar_path(path("psf", night=night, expid=e, camera=c)) for e, c in exposure_tasks(night, ["ARC"]))]
    return arcs + [path("psfnight", night=night, camera=c) for c in night_cameras(night)]


# ---------------------------------------------------------------- extract.smk
def extract_options():
    opts = config["extract"]
    out = []
    if opts["nsubbundle"]:
        out.append(f"--nsubbundle {opts['nsubbundle']}")
    if opts["boxcar"]:
        out.append("--boxcar")
    return " ".join(out)


@register_targets
def frame_targets(night):
    """Frames of every flat and science camera."""
    return [path("frame", night=night, expid=e, camera=c) for e, c in exposure_tasks(night, ["FLAT", "SCIENCE"])]


# ---------------------------------------------------------------- calib.smk
def fiberflatnight_inputs(wildcards):
    """The fiberflats of every flat exposure of the night in this camera."""
    return [path("fiberflat", night=wildcards.night, expid=e, camera=c)
            for e, c in exposure_tasks(wildcards.night, ["FLAT"]) if c == wildcards.camera]


@register_targets
def calib_targets(night):
    """fiberflat of every flat camera, fiberflatnight of every camera with flats, sky of every science camera."""
    flats = exposure_tasks(night, ["FLAT"])
    out = [path("fiberflat", night=night, expid=e, camera=c) for e, c in flats]
    out += [path("fiberflatnight", night=night, camera=c) for c in sorted({c for _, c in flats})]
    out += [path("sky", night=night, expid=e, camera=c) for e, c in exposure_tasks(night, ["SCIENCE"])]
    return out

# ---------------------------------------------------------------- qa.smk
#: optional per-camera inputs of qa_exposure, by OBSTYPE (used when a rule produces the kind)
QA_OPTIONAL_KINDS = {"FLAT": ("fiberflat",), "SCIENCE": ("sky", "fluxcalib", "cframe")}


def qa_produced_kinds():
    """Kinds of QA_OPTIONAL_KINDS whose path pattern is the output of some rule of the workflow."""
    from snakemake.io import strip_wildcard_constraints   # outputs carry the global constraints
    outputs = {os.path.normpath(strip_wildcard_constraints(str(out))) for rule in workflow.rules for out in rule.output}
    names = {rule.name for rule in workflow.rules}
    return {kind for kinds in QA_OPTIONAL_KINDS.values() for kind in kinds
            if os.path.normpath(pattern(kind)) in outputs or kind in names}


def qa_exposure_inputs(wildcards):
    """Per camera: the arc's PSF sidecar, or the frame plus the later products the workflow makes."""
    produced = qa_produced_kinds()
    inputs = []
    for row in exposures(wildcards.night):
        if f"{row['EXPID']:08d}" != wildcards.expid:
            continue
        for cam in row["CAMERAS"]:
            fields = dict(night=wildcards.night, expid=wildcards.expid, camera=cam)
            if row["OBSTYPE"] == "ARC":
                inputs.append(sidecar_path(path("psf", **fields)))
                continue
            inputs.append(path("frame", **fields))
            inputs += [path(k, **fields) for k in QA_OPTIONAL_KINDS.get(row["OBSTYPE"], ()) if k in produced]
    return inputs


def qa_exposure_targets(night):
    """exposure-qa files of every arc, flat and science exposure of the night."""
    expids = sorted({e for e, _ in exposure_tasks(night, ["ARC", "FLAT", "SCIENCE"])})
    return [path("qa_exposure", night=night, expid=e) for e in expids]


def qa_report_inputs(wildcards):
    """Every exposure-qa file and every other registered target: the report is the DAG's last job."""
    out = []
    for night in NIGHTS:
        out += qa_exposure_targets(night)
        for function in TARGETS:
            if function is not qa_targets:
                out += function(night)
    return sorted(set(out))


@register_targets
def qa_targets(night):
    """The exposure-qa files of the night and the production's report."""
    return qa_exposure_targets(night) + [path("qa_report")]


#: log of the report built by the onerror handler (the qa_report job's own log is kept)
QA_REPORT_AFTER_FAILURE_LOG = os.path.join(LOGS, "qa_report", "all", "qa_report_after_failure.log")


def build_report_after_failure(workflow):
    """From ``onerror:``: build the QA report the failed run did not reach, its failed jobs as alarms.

    The qa_report job waits for every target, so it never runs when a job fails;
    a run whose DAG held it (``make run``, ``desired rerun``) gets the report here
    instead, after report_production() removed the untrusted products.  The
    lock is still held but no job runs, so tasks are judged as after the run.
    Logged to QA_REPORT_AFTER_FAILURE_LOG; a failure to build is logged, never raised.
    """
    import logging
    dag = getattr(workflow, "dag", None)
    if dag is None or not any(job.rule.name == "qa_report" for job in dag.jobs):
        return
    from desired.scripts.qa import run as build_qa
    os.makedirs(os.path.dirname(QA_REPORT_AFTER_FAILURE_LOG), exist_ok=True)
    handler = logging.FileHandler(QA_REPORT_AFTER_FAILURE_LOG, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    library = logging.getLogger("desired")
    saved = library.level, library.propagate
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False
    try:
        templates = globals().get("REDSHIFT_TEMPLATES")  # rules/common_redshift.smk
        index = build_qa(dict(config), outdir=os.path.dirname(path("qa_report")), running=False, templates=templates)
        logger.warning(f"desired: QA report of the failed run (its failed jobs as alarms): {index}")
    except Exception as err:  # the run has failed already: report, never mask its error
        library.exception("QA report after the failed run not built")
        logger.error(f"desired: QA report not built after the failed run ({type(err).__name__}: {err}); "
                     f"see {QA_REPORT_AFTER_FAILURE_LOG}")
    finally:
        library.removeHandler(handler)
        handler.close()
        library.setLevel(saved[0])
        library.propagate = saved[1]


# ---------------------------------------------------------------- DAG-building speed
def cache_function_signatures(rules):
    """Record each input/params/resources function's signature once, on the function.

    Snakemake inspects the signature of such a function at every call (which
    arguments it takes: wildcards, input, output, resources...); for one
    full-size night that is ~57 000 inspect.signature calls.  It reads a
    signature recorded with snakemake.common.overwrite_function_params instead,
    the mechanism its own path helpers use.  Call after every rule is defined.
    """
    import inspect
    from snakemake.common import overwrite_function_params
    for step in rules:
        items = [*step.input, *step.params, *step.log, *step.resources.values()]
        for item in items:
            if callable(item) and not isinstance(item, type) and not hasattr(item, "_overwrite_params"):
                try:
                    overwrite_function_params(item, inspect.signature(item).parameters)
                except (TypeError, ValueError, AttributeError):   # builtins without a signature
                    pass


# ---------------------------------------------------------------- resuming a killed run
INCOMPLETE_CHECK = {"done": False}

def remove_incomplete_outputs():
    """With --rerun-incomplete, delete outputs Snakemake marked incomplete (no run active).

    Snakemake checks the incomplete markers only for jobs known when the DAG is
    first built, not for jobs added after a checkpoint (here: everything past
    the exposure table), so a half-written output of a killed job would be taken
    as done.  Removing it at parse time makes the job rerun.
    """
    settings = getattr(workflow, "dag_settings", None)
    if INCOMPLETE_CHECK["done"] or settings is None or not getattr(settings, "force_incomplete", False):
        return
    INCOMPLETE_CHECK["done"] = True
    if snakemake_running("."):
        return
    for output in sorted(incomplete_outputs(".")):
        if os.path.isfile(output):
            logger.warning(f"removing incomplete output of a killed job: {output}")
            os.remove(output)



# ---------------------------------------------------------------- invalidation and the run's summary
def report_production(workflow, when):
    """Remove untrusted products (desired.workflow_status.invalidate_stale); at the end, list failed tasks.

    At the start: the products of exposures marked bad.  At the end: also every
    product downstream of a job that failed in this run.
    """
    from desired.workflow_status import expected_tasks, failure_line, invalidate_stale, task_states
    rows = []
    for night in NIGHTS:
        found = scanned_rows(night)
        if found is None and os.path.exists(exposure_table_path(night)):
            found = read_exposure_table(exposure_table_path(night))
        for bad in (False, True):
            rows.extend(select_rows(found or [], night=int(night), cameras=config["cameras"], bad=bad))
    rows.sort(key=lambda r: (int(r["NIGHT"]), int(r["EXPID"])))
    tasks = expected_tasks(rows, ROOTS)
    failed_jobs = getattr(getattr(workflow, "scheduler", None), "failed", ()) if when == "end" else ()
    failed_outputs = [str(f) for job in failed_jobs for f in job.output]
    for removed in invalidate_stale(tasks, ".", failed_outputs=failed_outputs, rows=rows, roots=ROOTS):
        logger.warning(f"removed untrusted product (upstream failed or exposure marked bad): {removed}")
    if when != "end":
        return
    states = task_states(tasks, ".", running=False)
    failed = [t for t in tasks if states[t["name"]] == "failed"]
    if failed:
        lines = [f"desired: {len(failed)} task(s) failed (details: desired status --failed):"]
        lines += [f"  {t['name']}: {failure_line(t, '.')}" for t in failed]
        logger.error("\n".join(lines))
