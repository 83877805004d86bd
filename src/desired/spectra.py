"""The multi-band spectra container (spectra and coadd products)."""
from __future__ import annotations

import numpy as np
from astropy.table import Table, vstack

#: fibermap columns that identify one spectrum of one exposure, when present
ROW_KEY_COLUMNS = ("TARGETID", "NIGHT", "EXPID", "TILEID", "FIBER")


class Spectra:
    """Spectra of many targets in several bands (b, r, z), row-matched across bands.

    Parameters
    ----------
    bands : list of str
        Band names such as ``['b', 'r', 'z']`` (or ``['brz']`` for camera-combined coadds).
    wave : dict band -> array, shape (nwave_band,)
        Wavelength grids in vacuum Angstrom.
    flux, ivar : dict band -> array, shape (nspec, nwave_band)
        Flux (1e-17 erg/s/cm2/Angstrom for calibrated spectra) and its inverse variance.
    mask : dict band -> int array, shape (nspec, nwave_band), optional
        specmask bits; zeros when omitted.
    resolution_data : dict band -> array, shape (nspec, ndiag, nwave_band), optional
        Resolution-matrix diagonals.
    fibermap : astropy.table.Table, optional
        One row per spectrum (for coadds: one row per target).
    exp_fibermap : astropy.table.Table, optional
        Coadds only: one row per input exposure spectrum.
    scores : astropy.table.Table, optional
        One row per spectrum.
    extra_catalog : astropy.table.Table or structured array, optional
        One row per spectrum.
    header : dict-like, optional
        HDU0 keywords (SPGRP, SPGRPVAL, HPXPIXEL, SURVEY, PROGRAM, ...).
    model : dict band -> array, shape (nspec, nwave_band), optional
        Model spectra (rrmodel-style), if any.
    """

    def __init__(self, bands, wave, flux, ivar, mask=None, resolution_data=None, fibermap=None,
                 exp_fibermap=None, scores=None, extra_catalog=None, header=None, model=None):
        self.bands = [str(b) for b in bands]
        self.wave = {b: np.asarray(wave[b], dtype=np.float64) for b in self.bands}
        self.flux = {b: np.asarray(flux[b], dtype=np.float64) for b in self.bands}
        self.ivar = {b: np.asarray(ivar[b], dtype=np.float64) for b in self.bands}
        nspec = None
        for b in self.bands:
            shape = self.flux[b].shape
            if self.flux[b].ndim != 2 or shape[1] != self.wave[b].size or self.ivar[b].shape != shape:
                raise ValueError(f"band {b}: flux/ivar must have shape (nspec, {self.wave[b].size}); "
                                 f"got {shape}, {self.ivar[b].shape}")
            if nspec is not None and shape[0] != nspec:
                raise ValueError(f"band {b} has {shape[0]} spectra, other bands {nspec}")
            nspec = shape[0]
        self._nspec = 0 if nspec is None else nspec
        self.mask = {b: (np.zeros(self.flux[b].shape, np.int32) if mask is None or mask.get(b) is None
                         else np.asarray(mask[b], dtype=np.int32)) for b in self.bands}
        self.resolution_data = None
        if resolution_data is not None:
            self.resolution_data = {b: np.asarray(resolution_data[b], dtype=np.float64) for b in self.bands}
            for b, r in self.resolution_data.items():
                if r.ndim != 3 or r.shape[0] != self._nspec or r.shape[2] != self.wave[b].size:
                    raise ValueError(f"band {b}: resolution_data must have shape "
                                     f"({self._nspec}, ndiag, {self.wave[b].size}); got {r.shape}")
        self.model = None if model is None else {b: np.asarray(model[b], dtype=np.float64) for b in self.bands}
        for name, table in (("fibermap", fibermap), ("scores", scores), ("extra_catalog", extra_catalog)):
            if table is not None and len(table) != self._nspec:
                raise ValueError(f"{name} has {len(table)} rows for {self._nspec} spectra")
        self.fibermap = fibermap
        self.exp_fibermap = exp_fibermap
        self.scores = scores
        self.extra_catalog = extra_catalog
        self.header = dict(header) if header is not None else {}

    @property
    def is_coadd(self):
        """True when the spectra are coadds (an EXP_FIBERMAP is present)."""
        return self.exp_fibermap is not None

    def num_spectra(self):
        """Number of spectra (rows)."""
        return self._nspec

    def target_ids(self):
        """TARGETID of each row, shape (nspec,)."""
        if self.fibermap is None or "TARGETID" not in self.fibermap.colnames:
            raise ValueError("these spectra have no fibermap with TARGETID")
        return np.asarray(self.fibermap["TARGETID"])

    def num_targets(self):
        """Number of distinct TARGETIDs."""
        return np.unique(self.target_ids()).size

    def _rows(self, rows):
        """Return a new Spectra with rows ``rows`` (int index array) of every array and table."""
        def take(d):
            return None if d is None else {b: d[b][rows] for b in self.bands}
        exp_fibermap = self.exp_fibermap
        if exp_fibermap is not None and self.fibermap is not None:
            keep = np.isin(np.asarray(exp_fibermap["TARGETID"]), np.asarray(self.fibermap["TARGETID"])[rows])
            exp_fibermap = exp_fibermap[keep]
        return Spectra(self.bands, {b: self.wave[b].copy() for b in self.bands}, take(self.flux), take(self.ivar),
                       take(self.mask), take(self.resolution_data),
                       None if self.fibermap is None else self.fibermap[rows],
                       exp_fibermap,
                       None if self.scores is None else self.scores[rows],
                       None if self.extra_catalog is None else self.extra_catalog[rows],
                       dict(self.header), take(self.model))

    def select(self, targets=None, index=None):
        """Return a new Spectra with a subset of the rows.

        Parameters
        ----------
        targets : array of int, optional
            Keep the rows whose TARGETID is in ``targets`` (file order kept).
        index : slice, int array or bool array, optional
            Keep these rows (applied after ``targets``).
        """
        rows = np.arange(self._nspec)
        if targets is not None:
            rows = rows[np.isin(self.target_ids(), np.atleast_1d(targets))]
        if index is not None:
            rows = rows[index]
        return self._rows(np.atleast_1d(rows))

    @classmethod
    def stack(cls, spectra_list):
        """Concatenate the rows of several Spectra with the same bands and wavelength grids.

        Parameters
        ----------
        spectra_list : list of Spectra

        Returns
        -------
        Spectra
            Header of the first input; tables stacked with :func:`astropy.table.vstack`.
        """
        spectra_list = list(spectra_list)
        if not spectra_list:
            raise ValueError("nothing to stack")
        first = spectra_list[0]
        for s in spectra_list[1:]:
            if s.bands != first.bands:
                raise ValueError(f"cannot stack bands {s.bands} with {first.bands}")
            for b in first.bands:
                if s.wave[b].shape != first.wave[b].shape or not np.allclose(s.wave[b], first.wave[b]):
                    raise ValueError(f"cannot stack: band {b} wavelength grids differ")

        def cat(attr):
            if any(getattr(s, attr) is None for s in spectra_list):
                return None
            return {b: np.concatenate([getattr(s, attr)[b] for s in spectra_list]) for b in first.bands}

        def tab(attr):
            tables = [getattr(s, attr) for s in spectra_list]
            if any(t is None for t in tables):
                return None
            return vstack([Table(t) for t in tables], metadata_conflicts="silent")

        exp = [s.exp_fibermap for s in spectra_list if s.exp_fibermap is not None]
        return cls(first.bands, {b: first.wave[b].copy() for b in first.bands}, cat("flux"), cat("ivar"),
                   cat("mask"), cat("resolution_data"), tab("fibermap"),
                   vstack(exp, metadata_conflicts="silent") if exp else None,
                   tab("scores"), tab("extra_catalog"), dict(first.header), cat("model"))

    def _row_keys(self, other):
        cols = [c for c in ROW_KEY_COLUMNS
                if c in self.fibermap.colnames and c in other.fibermap.colnames]
        if "TARGETID" not in cols:
            raise ValueError("update needs TARGETID in both fibermaps")
        def keys(fm):
            return [tuple(row) for row in zip(*(np.asarray(fm[c]).tolist() for c in cols))]
        return keys(self.fibermap), keys(other.fibermap)

    def update(self, other):
        """Return a new Spectra with the rows of ``other`` added, replacing matching rows.

        A row of ``other`` replaces the row of ``self`` with the same TARGETID (and the
        same NIGHT, EXPID, TILEID and FIBER when both fibermaps carry them); other rows are
        appended in order.

        Parameters
        ----------
        other : Spectra
            Same bands and wavelength grids.
        """
        if self.fibermap is None or other.fibermap is None:
            raise ValueError("update needs fibermaps on both Spectra")
        mine, theirs = self._row_keys(other)
        position = {k: i for i, k in enumerate(mine)}
        order_other = {k: j for j, k in enumerate(theirs)}
        # rows of self keep their place (taking other's values when replaced); new rows are appended
        sources = [("o", order_other[k]) if k in order_other else ("s", i) for i, k in enumerate(mine)]
        sources += [("o", j) for j, k in enumerate(theirs) if k not in position]
        stacked = Spectra.stack([self, other])
        rows = np.array([i if src == "s" else self._nspec + i for src, i in sources], dtype=int)
        result = stacked._rows(rows)
        if self.exp_fibermap is not None or other.exp_fibermap is not None:
            exp = [t for t in (self.exp_fibermap, other.exp_fibermap) if t is not None]
            result.exp_fibermap = _unique_rows(vstack(exp, metadata_conflicts="silent"))
        return result


def _unique_rows(table):
    """Drop repeated (TARGETID, EXPID, FIBER) rows of an exposure fibermap, keeping the last."""
    cols = [c for c in ("TARGETID", "EXPID", "FIBER") if c in table.colnames]
    if not cols:
        return table
    keys = [tuple(r) for r in zip(*(np.asarray(table[c]).tolist() for c in cols))]
    last = {k: i for i, k in enumerate(keys)}
    rows = sorted(last.values())
    return table[rows]
