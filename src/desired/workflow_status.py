"""Workflow bookkeeping: task names, status sidecars and the progress table.

A *task* is one job of the production DAG, named the desi_pipe way
``<step>_<field>_...``: ``preproc_20261124_b0_00000012``,
``psfnight_20261124_r0``, ``exposure_table_20261124``.  Each task has one output
file whose path comes from :data:`desired.paths.PATTERNS`; for the
failure-absorbing arc steps (``preproc`` of an arc, ``psf``) the output is an
ok/failed *sidecar* next to the product (see :func:`sidecar_path`).
"""
from __future__ import annotations

import os

#: sidecar contents
STATUS_OK = "ok"
STATUS_FAILED = "failed"


def sidecar_path(product_path):
    """Return the ok/failed sidecar path of a product (``.fits`` -> ``.status``).

    Parameters
    ----------
    product_path : str
        Path or wildcard pattern of a FITS product.
    """
    root, ext = os.path.splitext(product_path)
    return root + ".status" if ext == ".fits" else product_path + ".status"


def read_step_status(path):
    """Return ``"ok"``, ``"failed"`` or ``None`` (no sidecar) for a sidecar file.

    Parameters
    ----------
    path : str
    """
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        words = fh.read().split()
    return STATUS_OK if words and words[0] == STATUS_OK else STATUS_FAILED
