"""desired: a DESI-style spectroscopic pipeline orchestrated by Snakemake.

The library holds the algorithms (arrays in, arrays out); all file access lives
in :mod:`desired.io`; :mod:`desired.paths` holds the one table of file-name
patterns shared by the command line and the Snakemake rules.
"""
__version__ = "0.1.0"
