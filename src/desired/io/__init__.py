"""Readers and writers of every product of the DESI data model.

All file access of the pipeline goes through this package.  Every writer writes
to a temporary file in the destination directory and renames it into place
(:func:`desired.io.util.atomic_path`), so a killed job never leaves a
half-written product behind.  Readers raise :class:`DataModelError` naming the
file and what is wrong.
"""
from .util import DataModelError, atomic_path  # noqa: F401
