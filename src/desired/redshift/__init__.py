"""Redshift fitting (redrock's algorithm, restructured for speed).

Modules: :mod:`.templates` (template model, redshift grids, Lyman-series
transmission), :mod:`.rebin` (flux-conserving rebinning), :mod:`.zscan` (chi2 versus
redshift with shared matrix products), :mod:`.fit` (refinement, ZERR, DELTACHI2),
:mod:`.zwarning` (DESI's ZWARN bits), :mod:`.zfind` (the driver) and
:mod:`.zcatalog` (stacking redshift files into a catalog).
"""
from .zfind import fit_redshifts, prepare_bands, redshift_table  # noqa: F401
