"""``desired status``: per step, how many tasks are done / ready / waiting / running / failed.

``--failed`` lists every failed task with the first error line of its log (or
the recorded reason); ``--tasks STEP`` lists the task names of one step (or
``all``) by state, the names ``desired rerun`` takes; ``--task NAME`` prints one
task's state, files and log.  Exit status: 0, or 1 when ``--task``/``--tasks``
names something the production does not have.
"""
from __future__ import annotations

import os
import sys
import time

from ..workflow_status import (STATES, STEPS, failure_line, format_status_table, load_config, production_tasks,
                               status_table, task_states)


def add_arguments(parser):
    """Register the options of ``desired status``."""
    parser.add_argument("--configfile", default="config/config.yaml",
                        help="workflow config (default config/config.yaml; another file is layered over "
                             "config/config.yaml when that exists, as Snakemake does)")
    parser.add_argument("--schema", default=None,
                        help="config schema (default: config/config.schema.yaml of --directory, else next to the "
                             "config file, else the installed repository's)")
    parser.add_argument("--directory", default=".", help="Snakemake working directory (default .)")
    parser.add_argument("--watch", action="store_true", help="refresh the table until interrupted")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between refreshes with --watch")
    parser.add_argument("--task", default=None, help="print the state and log of one task instead of the table")
    parser.add_argument("--tasks", default=None, metavar="STEP",
                        help="list the task names of STEP (or 'all') grouped by state")
    parser.add_argument("--failed", action="store_true",
                        help="list the failed tasks with the first error line of each log")


class UnknownTask(LookupError):
    """A task or step name that the production does not have."""


def render(config, directory=".", task=None, tasks_of=None, failed=False):
    """Return the status text of the production (table, one task, a step's task names, or the failures).

    Parameters
    ----------
    config : dict
        Validated workflow config.
    directory : str
        Snakemake working directory.
    task : str, optional
        Task name (``preproc_20261124_b0_00000012``): its state, files and log.
    tasks_of : str, optional
        Step name or ``all``: task names by state.
    failed : bool
        Failed tasks with the first error line of each log.

    Raises
    ------
    UnknownTask
        If ``task`` or ``tasks_of`` is not part of the production.
    """
    tasks, missing = production_tasks(config, directory)
    states = task_states(tasks, directory)
    if task:
        return _one_task(tasks, states, task, directory)
    if tasks_of:
        if tasks_of != "all" and tasks_of not in STEPS:
            raise UnknownTask(f"{tasks_of}: unknown step; steps: {', '.join(STEPS)} or all")
        lines = []
        for state in STATES:
            names = [t["name"] for t in tasks if states[t["name"]] == state and tasks_of in ("all", t["step"])]
            if names:
                lines.append(f"{state} ({len(names)}):")
                lines.extend(f"  {name}" for name in names)
        text = "\n".join(lines) or f"{tasks_of}: no tasks yet"
    elif failed:
        bad = [t for t in tasks if states[t["name"]] == "failed"]
        text = "\n".join(f"{t['name']}: {failure_line(t, directory)}" for t in bad) or "no failed task"
    else:
        text = format_status_table(status_table(tasks, directory, states))
    if missing:
        text += ("\nnight(s) " + ", ".join(map(str, missing))
                 + ": exposure table not built yet (their tasks are not counted)")
    return text


def _one_task(tasks, states, name, directory):
    match = [t for t in tasks if t["name"] == name]
    if not match:
        raise UnknownTask(f"{name}: no such task in the exposure tables (list them with --tasks all)")
    found = match[0]
    state = states[found["name"]]
    text = f"{found['name']}: {state}\noutput: {found['output']}\nlog: {found['log']}"
    if state == "failed":
        text += f"\nreason: {failure_line(found, directory)}"
    log = os.path.join(directory, found["log"])
    if os.path.exists(log):
        with open(log, errors="replace") as fh:
            text += "\n" + fh.read()
    return text


def run(configfile="config/config.yaml", schema=None, directory=".", task=None, tasks_of=None, failed=False):
    """Return the status text of the production described by a workflow config file.

    Parameters
    ----------
    configfile : str
        Workflow config yaml (layered over ``config/config.yaml`` of ``directory`` when that exists).
    schema : str, optional
        Config schema; None = :func:`desired.workflow_status.find_schema`.
    directory : str
        Snakemake working directory.
    task, tasks_of, failed
        See :func:`render`.

    Raises
    ------
    ValueError
        If the config does not satisfy the schema.
    UnknownTask
        See :func:`render`.
    """
    return render(load_config(configfile, schema, directory=directory), directory, task, tasks_of, failed)


def main(args):
    """Print the status (repeatedly with --watch); return 0, or 1 for an unknown task/step."""
    while True:
        try:
            text = run(configfile=args.configfile, schema=args.schema, directory=args.directory, task=args.task,
                       tasks_of=args.tasks, failed=args.failed)
        except UnknownTask as err:
            print(f"desired status: {err}", file=sys.stderr)
            return 1
        if args.watch:
            sys.stdout.write("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S ") + "\n")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        if not args.watch:
            return 0
        time.sleep(args.interval)
