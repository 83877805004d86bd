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


def render(args, config):
    """Return the status text of the production."""
    tasks, missing = production_tasks(config, args.directory)
    if args.task:
        from ..workflow_status import task_state
        match = [t for t in tasks if t["name"] == args.task]
        if not match:
            return f"{args.task}: no such task in the exposure tables"
        task = match[0]
        text = f"{task['name']}: {task_state(task, args.directory)}\noutput: {task['output']}\nlog: {task['log']}"
        log = os.path.join(args.directory, task["log"])
        if os.path.exists(log):
            with open(log) as fh:
                text += "\n" + fh.read()
        return text
    text = format_status_table(status_table(tasks, args.directory))
    if missing:
        text += ("\nnight(s) " + ", ".join(map(str, missing))
                 + ": exposure table not built yet (their tasks are not counted)")
    return text


def main(args):
    """Print the table (repeatedly with --watch); return 0."""
    schema = args.schema or os.path.join(os.path.dirname(os.path.abspath(args.configfile)), "config.schema.yaml")
    config = load_config(args.configfile, schema)
    while True:
        text = render(args, config)
        if args.watch:
            sys.stdout.write("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S ") + "\n")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        if not args.watch:
            return 0
        time.sleep(args.interval)
