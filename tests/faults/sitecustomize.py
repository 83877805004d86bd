"""Fault injection for the workflow tests and benchmarks/bench_faults.py (imported at interpreter start).

Put this directory first on PYTHONPATH and set ``DESIRED_FAULT`` to a comma-separated
list of ``step:substring:kind``: the job of ``step`` (a desired.scripts module name,
or ``psf``/``extract`` for the shell rules) whose output file name contains
``substring`` fails with

- ``data``: a DataModelError (bad input data: the library's own error type),
- ``import``: a ModuleNotFoundError (a broken environment),
- ``kill``: SIGKILL of its own process (what the out-of-memory killer does).

Everything else runs the real code.  Nothing happens while ``DESIRED_FAULT`` is unset.
"""
import os
import signal
import sys

SPEC = [item.split(":") for item in os.environ.get("DESIRED_FAULT", "").split(",") if item.count(":") == 2]


def _inject(step, outfile):
    for fstep, sub, kind in SPEC:
        if fstep == step and outfile and sub in os.path.basename(str(outfile)):
            if kind == "data":
                from desired.io.util import DataModelError
                raise DataModelError(outfile, "injected data error")
            if kind == "import":
                raise ModuleNotFoundError("No module named 'injected_missing_module'", name="injected_missing_module")
            if kind == "kill":
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)


def _wrap_run(module_name, step, out_key):
    import importlib
    module = importlib.import_module(f"desired.scripts.{module_name}")
    real = module.run

    def run(*args, **kwargs):
        _inject(step, kwargs.get(out_key))
        return real(*args, **kwargs)

    module.run = run


def _wrap_cli():
    import desired.cli
    real = desired.cli.main

    def main(argv=None):
        argv = sys.argv[1:] if argv is None else list(argv)
        step = next((a for a in argv if not a.startswith("-")), None)
        if step in ("psf", "extract") and "--outfile" in argv:
            try:
                _inject(step, argv[argv.index("--outfile") + 1])
            except Exception as err:
                return desired.cli.report_error(f"desired {step}", err)
        return real(argv)

    desired.cli.main = main


if SPEC:
    for _module, _step, _key in (("exposure_table", "exposure_table", "outfile"), ("fibermap", "fibermap", "outfile"),
                                 ("preproc", "preproc", "outfile"), ("psfnight", "psfnight", "outfile"),
                                 ("traceshift", "traceshift", "outfile")):
        _wrap_run(_module, _step, _key)
    _wrap_cli()
