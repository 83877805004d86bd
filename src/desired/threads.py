"""Thread control of the linear-algebra libraries.

The pipeline parallelises over bundles (processes or MPI ranks); the matrices
of one bundle are small, so BLAS threads inside a worker only add overhead and,
with several workers per node, oversubscribe the cores.
"""
from __future__ import annotations

_SET_THREADS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
                "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_")
_GET_THREADS = ("openblas_get_num_threads", "scipy_openblas_get_num_threads",
                "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_")


def _openblas_handles():
    """(get, set) function pairs of every OpenBLAS loaded in this process (numpy's, scipy's)."""
    import ctypes
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    handles = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in zip(_GET_THREADS, _SET_THREADS):
            if hasattr(lib, get) and hasattr(lib, set_):
                handles.append((getattr(lib, get), getattr(lib, set_)))
                break
    return handles


class single_threaded_blas:
    """Context manager running OpenBLAS on one thread, restoring the previous setting.

    The extraction's matrices are small (a few hundred rows) and the parallelism is
    over bundles; OpenBLAS threads on such matrices only add overhead, and on a
    loaded machine their spin-waiting slows the solves by an order of magnitude.
    Libraries other than OpenBLAS are left alone.
    """

    def __enter__(self):
        self._saved = []
        for get, set_ in _openblas_handles():
            self._saved.append((set_, get()))
            set_(1)
        return self

    def __exit__(self, *exc):
        for set_, n in self._saved:
            set_(n)
        return False
