"""``desired group-spectra``: regroup cframes into one healpix or tile spectra file.

Examples::

    desired group-spectra --healpix 27258 --survey main --program dark --nside 64 \\
        --infiles prod/exposures/*/*/cframe-*.fits -o spectra-main-dark-27258.fits
    desired group-spectra --tile 1000 --spectrograph 0 --group cumulative --value 20261124 \\
        --infiles ... -o spectra-0-1000-thru20261124.fits

Only the rows of the group are read.  Without ``-c`` every output image HDU is written piece by
piece, the rows' bytes going from the cframes to the spectra file (``os.copy_file_range``, no
decoding: FITS images are big-endian on both sides) wherever the cframe HDU allows it
(uncompressed, float32/int32), so memory holds the metadata and at most one frame's rows;
with ``-c`` one band is assembled in memory at a time for the coadd.  Exit status: 0 on success, 1 on unreadable or
inconsistent input (nothing written), 2 when no input row belongs to the group.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Register the command-line options on ``parser``."""
    parser.add_argument("--infiles", nargs="+", required=True, help="cframe files (any superset of the group's)")
    parser.add_argument("-o", "--outfile", required=True, help="output spectra file")
    parser.add_argument("--healpix", type=int, default=None, help="nested healpix pixel")
    parser.add_argument("--nside", type=int, default=64, help="healpix nside (default 64)")
    parser.add_argument("--ring", action="store_true", help="RING numbering instead of NESTED")
    parser.add_argument("--survey", default=None, help="survey of the healpix group (default: from the inputs)")
    parser.add_argument("--program", default=None, help="program of the healpix group (default: from the inputs)")
    parser.add_argument("--tile", type=int, default=None, help="tile of a tile grouping")
    parser.add_argument("--spectrograph", type=int, default=None, help="spectrograph of a tile grouping")
    parser.add_argument("--group", choices=["cumulative", "pernight", "perexp"], default=None,
                        help="tile grouping")
    parser.add_argument("--value", type=int, default=None,
                        help="night (cumulative: through this night; pernight) or expid (perexp)")
    parser.add_argument("-c", "--coaddfile", default=None,
                        help="also write the coadd of the group (same pass; options as desired coadd)")
    parser.add_argument("--nsig", type=float, default=4.0, help="coadd outlier rejection threshold (sigma)")
    parser.add_argument("--cameras", action="store_true", help="coadd across cameras too (brz)")
    parser.add_argument("--default-survey", default="main", help="survey when the inputs have none (default main)")
    parser.add_argument("--default-program", default="other",
                        help="program when the inputs have none (default other)")


def read_frame_metas(paths, default_survey="main", default_program="other"):
    """:class:`desired.grouping.FrameMeta` of every cframe (headers, grids, fibermaps only)."""
    from ..grouping import frame_meta
    from ..io.spectra import read_frame_meta
    return [frame_meta(p, read_frame_meta(p), default_survey, default_program) for p in paths]


def _score_columns(pieces, bands):
    """SCORES columns: those every frame of a band carries, else computed CALIB scores."""
    cols = {}
    for b in bands:
        frames = [p.frames[b] for p in pieces if p.frames[b] is not None]
        common = set(frames[0].scores_columns)
        for fm in frames[1:]:
            common &= set(fm.scores_columns)
        cols[b] = [c for c in frames[0].scores_columns if c in common and c != "TARGETID"]
    return cols


def _copy_piece(piece, band, dest, ndiag):
    """Copy the rows of ``piece`` in ``band`` into ``dest`` (kind -> output slice); blank rows for a missing camera."""
    from ..io.spectra import DISK_DTYPES, copy_frame_rows
    from ..maskbits import specmask
    fm = piece.frames[band]
    if fm is None:
        for kind, out in dest.items():
            out[...] = specmask.NODATA if kind == "mask" else 0
        return
    if fm.ndiag == ndiag:
        copy_frame_rows(fm.path, piece.rows, dest, fm.layout)
        return
    # narrower resolution: read into its own array and centre it among the output diagonals
    res = np.zeros((piece.rows.size, fm.ndiag, dest["resolution"].shape[2]), DISK_DTYPES["resolution"])
    copy_frame_rows(fm.path, piece.rows, dict(dest, resolution=res), fm.layout)
    off = (ndiag - fm.ndiag) // 2
    dest["resolution"][...] = 0
    dest["resolution"][:, off:off + fm.ndiag] = res


def _piece_scores(piece, band, copied, scores, nspec):
    """Copy the SCORES columns ``copied`` of the rows of ``piece`` into ``scores`` (0 for a missing camera)."""
    from ..io.spectra import read_frame_scores
    if not copied:
        return
    rows = slice(piece.start, piece.start + piece.rows.size)
    fm = piece.frames[band]
    data = None if fm is None else read_frame_scores(fm.path, piece.rows)
    for name in copied:
        scores.setdefault(name, np.zeros(nspec))[rows] = data[name] if data is not None else 0


def _computed_scores(band, copied):
    """Whether the CALIB band scores of ``band`` must be computed (the cframes do not all carry them)."""
    B = band.upper()
    return bool({f"INTEG_CALIB_FLUX_{B}", f"MEDIAN_CALIB_FLUX_{B}", f"MEDIAN_CALIB_SNR_{B}"} - set(copied))


def _fill_computed_scores(scores, rows, wave, flux, ivar, band, copied, nspec):
    """Band scores (desired.coadd.band_scores) of the spectra ``rows`` not copied from the cframes."""
    from ..coadd import band_scores
    for name, value in band_scores(wave, flux, ivar, band, suffix="CALIB").items():
        if name not in copied:
            scores.setdefault(name, np.zeros(nspec))[rows] = value


def _read_band(band, wave, pieces, nspec, ndiag, copied, scores):
    """Assemble one band's FLUX, IVAR, MASK, RESOLUTION of the group (only its rows are read); fill ``scores``.

    The arrays are big-endian (FITS byte order: the rows are copied from the cframes as bytes
    when their HDUs allow it, and written to the spectra file the same way).
    """
    from ..io.spectra import DISK_DTYPES
    arrays = {"flux": np.empty((nspec, wave.size), DISK_DTYPES["flux"]),
              "ivar": np.empty((nspec, wave.size), DISK_DTYPES["ivar"]),
              "mask": np.empty((nspec, wave.size), DISK_DTYPES["mask"]),
              "resolution": np.empty((nspec, ndiag, wave.size), DISK_DTYPES["resolution"])}
    for piece in pieces:
        rows = slice(piece.start, piece.start + piece.rows.size)
        _copy_piece(piece, band, {k: v[rows] for k, v in arrays.items()}, ndiag)
        _piece_scores(piece, band, copied, scores, nspec)
    if _computed_scores(band, copied):
        _fill_computed_scores(scores, slice(None), wave, arrays["flux"], arrays["ivar"], band, copied, nspec)
    return arrays["flux"], arrays["ivar"], arrays["mask"], arrays["resolution"]


def _piece_parts(piece, band, kind, ndiag, nwave):
    """What one piece contributes to a band's HDU of ``kind``: arrays, or (path, offset, nbytes) byte ranges."""
    from ..io.spectra import DISK_DTYPES, _row_runs
    fm = piece.frames[band]
    n = piece.rows.size
    shape = (n, ndiag, nwave) if kind == "resolution" else (n, nwave)
    if fm is not None and fm.layout.get(kind) is not None and (kind != "resolution" or fm.ndiag == ndiag) \
            and (kind != "mask" or fm.layout.get("mask_present", True)):
        rowbytes = int(np.prod(shape[1:])) * DISK_DTYPES[kind].itemsize
        return [(fm.path, fm.layout[kind] + first * rowbytes, (stop - first) * rowbytes)
                for first, stop, _ in _row_runs(piece.rows)]
    out = np.empty(shape, DISK_DTYPES[kind])          # decoded (or blank) rows of this piece
    _copy_piece(piece, band, {kind: out}, ndiag)
    return [out]


def _stream_band(writer, band, wave, pieces, nspec, ndiag, copied, scores):
    """Write one band's HDUs piece by piece (no coadd): rows go file to file where the cframes allow it.

    Memory is one piece's rows at most (none for the byte ranges copied by the kernel).
    """
    from ..io.spectra import DISK_DTYPES, IMAGE_KINDS, copy_frame_rows, ivar_units
    B, nwave = band.upper(), wave.size
    writer.write_image(f"{B}_WAVELENGTH", np.asarray(wave, dtype=">f8"), "Angstrom")
    for piece in pieces:
        _piece_scores(piece, band, copied, scores, nspec)
        fm = piece.frames[band]
        if _computed_scores(band, copied) and fm is not None:
            dest = {k: np.empty((piece.rows.size, nwave), DISK_DTYPES[k]) for k in ("flux", "ivar")}
            copy_frame_rows(fm.path, piece.rows, dest, fm.layout)
            _fill_computed_scores(scores, slice(piece.start, piece.start + piece.rows.size), wave, dest["flux"],
                                  dest["ivar"], band, copied, nspec)
    units = {"flux": writer.units, "ivar": ivar_units(writer.units)}
    for kind in IMAGE_KINDS:
        shape = (nspec, ndiag, nwave) if kind == "resolution" else (nspec, nwave)
        parts = (part for piece in pieces for part in _piece_parts(piece, band, kind, ndiag, nwave))
        writer.write_image_parts(f"{B}_{kind.upper()}", shape, DISK_DTYPES[kind], units.get(kind), parts)


def write_group(outfile, frames, group, onetile=False, coadd_outfile=None, cosmics_nsig=4.0, cameras=False):
    """Write the spectra file of one group (and optionally its coadd in the same pass).

    Only the group's rows of each frame are read.  Without a coadd the rows are streamed from the
    cframes into the file (memory: one frame's rows at most); with one, one band of the output is
    in memory at a time (plus the coadd's output).

    Parameters
    ----------
    outfile : str
    frames : list of desired.grouping.FrameMeta
    group : dict
        See :func:`desired.grouping.plan_group`.
    onetile : bool
        Keep tile keywords and fibermap columns (tile groupings).
    coadd_outfile : str, optional
        Also coadd the group (each band coadded from the arrays just written) into this file.
    cosmics_nsig, cameras :
        Coadd options (see :func:`desired.coadd.coadd_arrays`).

    Returns
    -------
    int
        Number of spectra written (0: nothing written).
    """
    from ..grouping import fibermap_table, group_fibermap, group_header, plan_group
    from ..io.spectra import SpectraFileWriter, native_inplace, write_coadd

    bands, waves, pieces = plan_group(frames, group)
    if not pieces:
        return 0
    fibermap, units = group_fibermap(pieces, onetile=onetile)
    header = group_header(group, pieces)
    nspec = len(fibermap)
    copied = _score_columns(pieces, bands)
    scores = {"TARGETID": np.asarray(fibermap["TARGETID"], dtype=np.int64)}
    with SpectraFileWriter(outfile) as writer:
        writer.open(header, fibermap, units=units)

        def band_arrays(b):
            ndiag = max(p.frames[b].ndiag for p in pieces if p.frames[b] is not None)
            arrays = _read_band(b, waves[b], pieces, nspec, ndiag, copied[b], scores)
            writer.write_band(b, waves[b], *arrays)
            return tuple(native_inplace(a) for a in arrays)      # written: swap in place for the coadd

        if coadd_outfile is None:
            for b in bands:
                ndiag = max(p.frames[b].ndiag for p in pieces if p.frames[b] is not None)
                _stream_band(writer, b, waves[b], pieces, nspec, ndiag, copied[b], scores)
        else:
            from ..coadd import coadd_arrays
            res = coadd_arrays(bands, waves, band_arrays, fibermap_table(fibermap, units), cosmics_nsig=cosmics_nsig,
                               onetile=onetile, cameras=cameras)
        table = np.zeros(nspec, dtype=[(k, "i8" if k == "TARGETID" else "f8") for k in scores])
        for k, v in scores.items():
            table[k] = v
        writer.add_table(table, "SCORES")
    log.info("wrote %s: %d spectra of %d targets from %d exposure-spectrographs, bands %s", outfile, nspec,
             np.unique(fibermap["TARGETID"]).size, len(pieces), "".join(bands))
    if coadd_outfile is not None:
        import os
        write_coadd(coadd_outfile, dict(header, INFIL000=os.path.basename(outfile), COADDNSG=float(cosmics_nsig)),
                    res)
        log.info("wrote %s: %d targets", coadd_outfile, len(res["fibermap"]))
    return nspec


def healpix_group(healpix, nside=64, nest=True, survey="main", program="other"):
    """The group dict of one healpix spectra file."""
    return {"kind": "healpix", "healpix": int(healpix), "nside": int(nside), "nest": bool(nest),
            "survey": None if survey is None else str(survey).lower(),
            "program": None if program is None else str(program).lower()}


def tile_group(kind, tileid, spectrograph, value):
    """The group dict of one tile spectra file (kind: cumulative, pernight or perexp)."""
    return {"kind": kind, "tileid": int(tileid), "spectrograph": int(spectrograph), "value": int(value)}


def run(infiles, outfile, group, default_survey="main", default_program="other", coadd_outfile=None,
        cosmics_nsig=4.0, cameras=False):
    """Group ``infiles`` (cframes) into the spectra file of ``group``; return the number of spectra.

    ``group`` is :func:`healpix_group` or :func:`tile_group` output; a healpix group whose survey
    or program is None takes the inputs' single (survey, program).  With ``coadd_outfile`` the
    group is also coadded in the same pass (like desi_group_spectra -c).

    Raises
    ------
    desired.io.util.DataModelError, ValueError
        Unreadable or inconsistent inputs (the message names the file); nothing is written.
    """
    frames = read_frame_metas(infiles, default_survey, default_program)
    if group["kind"] == "healpix" and (group.get("survey") is None or group.get("program") is None):
        pairs = sorted({(fm.survey, fm.program) for fm in frames})
        if len(pairs) != 1:
            raise ValueError(f"inputs span several (survey, program) {pairs}: give --survey and --program")
        group = dict(group, survey=group.get("survey") or pairs[0][0], program=group.get("program") or pairs[0][1])
    return write_group(outfile, frames, group, onetile=group["kind"] != "healpix", coadd_outfile=coadd_outfile,
                       cosmics_nsig=cosmics_nsig, cameras=cameras)


def main(args):
    """Run from parsed arguments; return the exit status."""
    from ..errors import EXIT_DATA_ERROR
    from ..io.util import DataModelError
    if args.healpix is not None:
        group = healpix_group(args.healpix, args.nside, not args.ring, args.survey, args.program)
    elif None not in (args.tile, args.spectrograph, args.group, args.value):
        group = tile_group(args.group, args.tile, args.spectrograph, args.value)
    else:
        log.error("give --healpix, or --tile, --spectrograph, --group and --value")
        return 1
    try:
        n = run(args.infiles, args.outfile, group, args.default_survey, args.default_program,
                coadd_outfile=args.coaddfile, cosmics_nsig=args.nsig, cameras=args.cameras)
    except (DataModelError, ValueError) as err:
        log.error("%s", err)
        return EXIT_DATA_ERROR
    if n == 0:
        log.error("no input spectrum belongs to the group; nothing written")
        return 2
    return 0

