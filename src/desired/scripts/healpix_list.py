"""Workflow step (no CLI subcommand): write the healpix list of one (survey, program)."""
from __future__ import annotations


def run(outfile, pixels):
    """Write ``pixels`` (one per line, sorted, unique) to ``outfile``: the healpix_list product."""
    from ..io.spectra import write_healpix_list
    write_healpix_list(outfile, pixels)
