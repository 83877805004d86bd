"""``desired rerun TASK``: force one task (and so its dependents) to run again.

The task name (``extract_20261124_r0_00000012``) is mapped to its output file and
``snakemake --forcerun OUTPUT`` is run on the default target, so the task and
everything downstream of it are rebuilt and nothing else.
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys

from ..exposures import read_exposure_table
from ..paths import findfile
from ..workflow_status import load_config, parse_task_name, production_roots, task_output

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the options of ``desired rerun``."""
    parser.add_argument("task", help="task name, e.g. extract_20261124_r0_00000012")
    parser.add_argument("--configfile", default="config/config.yaml", help="workflow config (default config/config.yaml)")
    parser.add_argument("--schema", default=None,
                        help="config schema (default: config/config.schema.yaml of --directory, else next to the "
                             "config file, else the installed repository's)")
    parser.add_argument("--snakefile", default="Snakefile", help="workflow Snakefile (default ./Snakefile)")
    parser.add_argument("--directory", default=".", help="Snakemake working directory (default .)")
    parser.add_argument("--cores", default="1", help="cores for the rerun (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the command and run it with -n")
    parser.add_argument("--print-only", action="store_true", help="only print the snakemake command")
    parser.add_argument("--profile", default=None, help="Snakemake profile (e.g. profiles/slurm)")


def rerun_command(task, config, configfile="config/config.yaml", snakefile="Snakefile", directory=".",
                  cores="1", profile=None, dry_run=False):
    """Return (snakemake argv list, output file) forcing one task and its dependents.

    Parameters
    ----------
    task : str
        Task name, e.g. ``extract_20261124_r0_00000012``.
    config : dict
        Validated workflow config.
    configfile, snakefile, directory : str
        Passed to snakemake.
    cores : str
        Cores when no profile is given.
    profile : str, optional
        Snakemake profile.
    dry_run : bool
        Add ``--dry-run``.

    Raises
    ------
    ValueError
        If the task name does not parse.
    """
    step, fields = parse_task_name(task)
    roots = production_roots(config)
    obstype = None
    if step == "preproc":
        table = findfile("exposure_table", root=roots["redux"], night=fields["night"])
        table = table if os.path.isabs(table) else os.path.join(directory, table)
        if os.path.exists(table):
            for row in read_exposure_table(table):
                if int(row["EXPID"]) == int(fields["expid"]):
                    obstype = row["OBSTYPE"]
    output = task_output(step, fields, roots, obstype)
    snakemake = os.path.join(os.path.dirname(sys.executable), "snakemake")
    if not os.path.exists(snakemake):
        snakemake = "snakemake"
    cmd = [snakemake, "--snakefile", snakefile, "--configfile", configfile,
           "--directory", directory, "--forcerun", output]
    cmd += ["--profile", profile] if profile else ["--cores", str(cores)]
    if dry_run:
        cmd.append("--dry-run")
    return cmd, output


def run(task, configfile="config/config.yaml", schema=None, snakefile="Snakefile", directory=".", cores="1",
        profile=None, dry_run=False, execute=True):
    """Force one task and its dependents to run again; return (command, exit status or None).

    Parameters
    ----------
    task : str
        Task name.
    configfile, schema, snakefile, directory, cores, profile, dry_run
        See :func:`rerun_command`; schema None = ``config.schema.yaml`` next to the config.
    execute : bool
        Run the command (False: only build it; the status is None then).

    Raises
    ------
    ValueError
        Invalid config or task name.
    """
    config = load_config(configfile, schema, directory=directory)
    from ..workflow_status import production_tasks
    known = {t["name"] for t in production_tasks(config, directory)[0]}
    parse_task_name(task)
    if task not in known:
        raise ValueError(f"{task}: no such task in the exposure tables (list them with: desired status --tasks all)")
    cmd, output = rerun_command(task, config, configfile=configfile, snakefile=snakefile, directory=directory,
                                cores=cores, profile=profile, dry_run=dry_run)
    log.info("task %s -> output %s", task, output)
    return cmd, (subprocess.call(cmd) if execute else None)


def main(args):
    """Map the task, print the command, run it (unless --print-only); return its exit code."""
    cmd, _ = run(args.task, configfile=args.configfile, schema=args.schema, snakefile=args.snakefile,
                 directory=args.directory, cores=args.cores, profile=args.profile, dry_run=args.dry_run,
                 execute=False)
    print(shlex.join(cmd))
    if args.print_only:
        return 0
    return subprocess.call(cmd)
