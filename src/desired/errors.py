"""Which failures are *data* errors, and the exit status that says so.

A step fails either because its input data are bad (a truncated raw file, a dead
camera, an arc too poor to fit: the library raises one of :func:`data_error_types`)
or because of its environment (a missing command or module, out of memory, a
signal, a bug).  Only the first kind may be absorbed by the workflow's arc chain
(recorded as a failed arc and left out of psfnight); the second must stop the job
loudly.  The ``desired`` command exits with :data:`EXIT_DATA_ERROR` for a data
error and with 1 (or the signal's 128+n from the shell) otherwise, so that a shell
rule can tell them apart without parsing logs.
"""
from __future__ import annotations

#: exit status of ``desired STEP`` when the input data are bad (sysexits.h EX_DATAERR)
EXIT_DATA_ERROR = 65


def data_error_types():
    """Return the tuple of exception classes that mean "the input data are bad".

    DataModelError (a file does not follow the data model: missing/truncated/corrupt)
    and DeadCameraError (every amplifier of a camera is dead).  Imported lazily so
    that ``desired --help`` stays fast.
    """
    from .io.util import DataModelError
    from .preproc import DeadCameraError
    return (DataModelError, DeadCameraError)


def is_data_error(err):
    """True when the exception ``err`` is one of :func:`data_error_types`."""
    return isinstance(err, data_error_types())
