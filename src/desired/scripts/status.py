"""``desired status``: per step, how many tasks are done / ready / waiting / running / failed."""
from __future__ import annotations

import os
import sys
import time

from ..workflow_status import format_status_table, load_config, production_tasks, status_table


def add_arguments(parser):
    """Register the options of ``desired status``."""
    parser.add_argument("--configfile", default="config/config.yaml", help="workflow config (default config/config.yaml)")
    parser.add_argument("--schema", default=None, help="config schema (default: next to the config file)")
    parser.add_argument("--directory", default=".", help="Snakemake working directory (default .)")
    parser.add_argument("--watch", action="store_true", help="refresh the table until interrupted")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between refreshes with --watch")
    parser.add_argument("--task", default=None, help="print the state and log of one task instead of the table")


def render(config, directory=".", task=None):
    """Return the status text of the production (the table, or one task's state and log).

    Parameters
    ----------
    config : dict
        Validated workflow config.
    directory : str
        Snakemake working directory.
    task : str, optional
        Task name (``preproc_20261124_b0_00000012``); None = the whole table.
    """
    tasks, missing = production_tasks(config, directory)
    if task:
        from ..workflow_status import task_state
        match = [t for t in tasks if t["name"] == task]
        if not match:
            return f"{task}: no such task in the exposure tables"
        found = match[0]
        text = f"{found['name']}: {task_state(found, directory)}\noutput: {found['output']}\nlog: {found['log']}"
        log = os.path.join(directory, found["log"])
        if os.path.exists(log):
            with open(log) as fh:
                text += "\n" + fh.read()
        return text
    text = format_status_table(status_table(tasks, directory))
    if missing:
        text += ("\nnight(s) " + ", ".join(map(str, missing))
                 + ": exposure table not built yet (their tasks are not counted)")
    return text


def run(configfile="config/config.yaml", schema=None, directory=".", task=None):
    """Return the status text of the production described by a workflow config file.

    Parameters
    ----------
    configfile : str
        Workflow config yaml.
    schema : str, optional
        Config schema; None = ``config.schema.yaml`` next to the config file.
    directory : str
        Snakemake working directory.
    task : str, optional
        One task's state and log instead of the table.

    Raises
    ------
    ValueError
        If the config does not satisfy the schema.
    """
    schema = schema or os.path.join(os.path.dirname(os.path.abspath(configfile)), "config.schema.yaml")
    return render(load_config(configfile, schema), directory, task)


def main(args):
    """Print the table (repeatedly with --watch); return 0."""
    while True:
        text = run(configfile=args.configfile, schema=args.schema, directory=args.directory, task=args.task)
        if args.watch:
            sys.stdout.write("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S ") + "\n")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        if not args.watch:
            return 0
        time.sleep(args.interval)
