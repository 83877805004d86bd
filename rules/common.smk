# Helpers shared by every stage: roots, path patterns from desired.paths.PATTERNS,
# exposure discovery (the exposure_table checkpoint), log/benchmark paths,
# the MPI launcher and the registry of `rule all` targets.
import os

from desired import paths as desired_paths
from desired.exposures import list_nights, read_exposure_table, select_rows
from desired.workflow_status import (incomplete_outputs, production_roots, read_step_status,
                                     sidecar_path, snakemake_running)
from snakemake.logging import logger

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


def tolerant(command, status="{output.status}"):
    """Shell snippet running `command` and recording ok/failed in a sidecar; always exits 0.

    Used for the psf checkpoint (a shell rule: it runs under srun); the
    script rules use desired.workflow_status.run_absorbing_failure instead.  The
    arc chain absorbs failures so that psfnight (a barrier over the night's arcs) can
    run with --keep-going when one arc fails: it combines the arcs whose sidecar
    says ok.
    """
    return ("if {cmd}; then s=ok; else s=failed; echo \"step failed; recorded in {st}\" >&2; fi; "
            "echo $s > {st}.tmp && mv {st}.tmp {st}").format(cmd=command, st=status)


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


def exposures(night, obstypes=None, camera=None):
    """Rows of the night's exposure table (waits for the exposure_table checkpoint)."""
    night = str(night)
    table = checkpoints.exposure_table.get(night=night, month=night[:6]).output.table
    cameras = config["cameras"]
    if camera is not None:
        cameras = [camera] if cameras is None or camera in cameras else []
    return select_rows(read_exposure_table(table), night=int(night), obstypes=obstypes, cameras=cameras)


def exposure_tasks(night, obstypes):
    """(expid string, camera) of every camera of every exposure of the given obstypes."""
    return [(f"{row['EXPID']:08d}", cam) for row in exposures(night, obstypes) for cam in row["CAMERAS"]]


def night_cameras(night):
    """Cameras present in any exposure of the night."""
    return sorted({cam for row in exposures(night) for cam in row["CAMERAS"]})


# ---------------------------------------------------------------- MPI
def mpi_launch(wildcards, resources):
    """Launcher prefix of an MPI-capable step: '' locally, '{mpi} -N {nodes} -n {tasks}' under SLURM."""
    mode = config["mpi"]["launcher"]
    if mode == "none":
        return ""
    if mode == "auto":
        plugin = workflow.executor_plugin
        name = getattr(plugin, "name", "") or ""
        # The SLURM job itself runs MPI rules (and groups) through one more snakemake
        # process (`--mode remote`, local executor): it is in a SLURM job when the
        # slurm executor submitted it, which SLURM_JOB_ID tells.
        in_slurm_job = workflow.remote_exec and "SLURM_JOB_ID" in os.environ
        if not (name.startswith("slurm") or in_slurm_job):
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
    """Inputs of the all-target: every registered target of every configured night."""
    remove_incomplete_outputs()
    out = []
    for night in NIGHTS:
        for function in TARGETS:
            out.extend(function(night))
    return out


# ---------------------------------------------------------------- stage helpers: exposures.smk
def exposure_table_inputs(wildcards):
    """Simulated night: the simulation marker; real data: the night's raw files (a new file reruns the scan)."""
    inputs = []
    if SIMULATING:
        inputs.append(os.path.join(SIM_DIR, f"simulate-{wildcards.night}.done"))
    else:
        night_dir = os.path.join(ROOTS["raw"], wildcards.night)
        if os.path.isdir(night_dir):
            for name in sorted(os.listdir(night_dir)):
                raw = path("raw", night=wildcards.night, expid=name)
                if name.isdigit() and os.path.exists(raw):
                    inputs.append(raw)
    if config["exposure_table"]:
        inputs.append(config["exposure_table"])
    return inputs


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
    """The arc PSFs of the night/camera whose fit succeeded (their sidecars say ok)."""
    psfs = []
    for expid, camera in exposure_tasks(wildcards.night, ["ARC"]):
        if camera != wildcards.camera:
            continue
        status = checkpoints.psf.get(night=wildcards.night, expid=expid, camera=camera).output.status
        if read_step_status(status) == "ok":
            psfs.append(path("psf", night=wildcards.night, expid=expid, camera=camera))
    if not psfs and config["psfnight"]["fallback_psf"]:
        psfs.append(config["psfnight"]["fallback_psf"].format(camera=wildcards.camera, night=wildcards.night))
    return psfs


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

