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
    parser.add_argument("--schema", default=None, help="config schema (default: next to the config file)")
    parser.add_argument("--snakefile", default="Snakefile", help="workflow Snakefile (default ./Snakefile)")
    parser.add_argument("--directory", default=".", help="Snakemake working directory (default .)")
    parser.add_argument("--cores", default="1", help="cores for the rerun (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the command and run it with -n")
    parser.add_argument("--print-only", action="store_true", help="only print the snakemake command")
    parser.add_argument("--profile", default=None, help="Snakemake profile (e.g. profiles/slurm)")


def rerun_command(args, config):
    """Return (snakemake argv list, output file) for the task."""
    step, fields = parse_task_name(args.task)
    roots = production_roots(config)
    obstype = None
    if step == "preproc":
        table = findfile("exposure_table", root=roots["redux"], night=fields["night"])
        table = table if os.path.isabs(table) else os.path.join(args.directory, table)
        if os.path.exists(table):
            for row in read_exposure_table(table):
                if int(row["EXPID"]) == int(fields["expid"]):
                    obstype = row["OBSTYPE"]
    output = task_output(step, fields, roots, obstype)
    snakemake = os.path.join(os.path.dirname(sys.executable), "snakemake")
    if not os.path.exists(snakemake):
        snakemake = "snakemake"
    cmd = [snakemake, "--snakefile", args.snakefile, "--configfile", args.configfile,
           "--directory", args.directory, "--forcerun", output]
    cmd += ["--profile", args.profile] if args.profile else ["--cores", str(args.cores)]
    if args.dry_run:
        cmd.append("--dry-run")
    return cmd, output


def main(args):
    """Map the task, print the command, run it (unless --print-only); return its exit code."""
    schema = args.schema or os.path.join(os.path.dirname(os.path.abspath(args.configfile)), "config.schema.yaml")
    config = load_config(args.configfile, schema)
    cmd, output = rerun_command(args, config)
    log.info("task %s -> output %s", args.task, output)
    print(shlex.join(cmd))
    if args.print_only:
        return 0
    return subprocess.call(cmd)
