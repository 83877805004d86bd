"""Shared I/O helpers: atomic writes and data-model checks."""
from __future__ import annotations

import contextlib
import logging
import os
import secrets

log = logging.getLogger(__name__)


class DataModelError(ValueError):
    """A file does not follow the data model (missing HDU, wrong shape, truncated...).

    Parameters
    ----------
    path : str
        The offending file.
    problem : str
        What is wrong.
    """

    def __init__(self, path, problem):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the final suffix (so ``.fits`` writers behave the
    same) and is removed if the body raises.  Parent directories are created.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fits_header_to_dict(header):
    """Return a plain dict of a FITS header's keywords (no COMMENT/HISTORY, no structural keys)."""
    skip = {"SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "TFIELDS",
            "COMMENT", "HISTORY", "", "CHECKSUM", "DATASUM", "ZIMAGE", "ZBITPIX", "ZCMPTYPE",
            "ZTENSION", "ZPCOUNT", "ZGCOUNT", "ZQUANTIZ", "ZDITHER0", "BSCALE", "BZERO"}
    out = {}
    for card in header.cards:
        key = card.keyword
        if key in skip or key.startswith(("NAXIS", "TTYPE", "TFORM", "TUNIT", "TDIM", "ZNAXIS",
                                          "ZTILE", "ZNAME", "ZVAL", "TNULL", "TSCAL", "TZERO")):
            continue
        out[key] = card.value
    return out


def _check_complete(hdus, path):
    """Raise DataModelError unless the HDUs span the whole (uncompressed) file.

    astropy silently drops a last HDU whose header is cut short (it only warns), so a
    file truncated inside its last header would otherwise read as a valid, shorter file.
    Gzipped files are decompressed once to find their size (a cut stream raises EOFError).
    """
    last = hdus.fileinfo(len(hdus) - 1)
    if last is None:
        return
    size = getattr(last.get("file"), "size", 0) or 0
    if not size and getattr(last.get("file"), "compression", None) == "gzip":
        import gzip
        with gzip.open(hdus.filename() or path, "rb") as stream:   # EOFError if the gzip stream is cut
            while chunk := stream.read(1 << 24):
                size += len(chunk)
    end = last["datLoc"] + last["datSpan"]
    if size and size != end:
        raise DataModelError(path, f"truncated or corrupt FITS file: its HDUs end at byte {end} "
                                   f"but the file has {size} bytes")


def open_fits(path):
    """Open a FITS file with astropy, turning unreadable files into DataModelError.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    astropy.io.fits.HDUList
        Opened lazily (memmap off so that truncation is detected on access).
    """
    from astropy.io import fits
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataModelError(path, "file does not exist")
    try:
        hdus = fits.open(path, memmap=False)
        hdus.verify("exception")
        # touching every HDU forces astropy to read all headers, revealing truncation
        len(hdus)
        _check_complete(hdus, path)
    except DataModelError:
        raise
    except Exception as err:                     # astropy raises OSError, VerifyError, TypeError...
        raise DataModelError(path, f"not a readable FITS file ({type(err).__name__}: {err})") from err
    return hdus


def require_hdu(hdus, extname, path):
    """Return HDU ``extname`` of an open HDUList or raise DataModelError."""
    try:
        return hdus[extname]
    except KeyError:
        names = [h.name for h in hdus]
        raise DataModelError(path, f"missing HDU {extname!r} (has {names})") from None


def read_array(hdus, extname, path, shape=None, ndim=None):
    """Return the data of HDU ``extname`` as a native-endian array, checking its shape.

    Parameters
    ----------
    hdus : astropy.io.fits.HDUList
    extname : str
    path : str
        File name for error messages.
    shape : tuple, optional
        Expected shape (``None`` entries match anything).
    ndim : int, optional
        Expected number of dimensions.
    """
    import numpy as np
    hdu = require_hdu(hdus, extname, path)
    try:
        data = hdu.data
    except Exception as err:
        raise DataModelError(path, f"HDU {extname!r} cannot be read ({type(err).__name__}: {err})") from err
    if data is None:
        raise DataModelError(path, f"HDU {extname!r} holds no data")
    data = np.asarray(data)
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    if ndim is not None and data.ndim != ndim:
        raise DataModelError(path, f"HDU {extname!r} has {data.ndim} dimensions, expected {ndim}")
    if shape is not None:
        ok = len(shape) == data.ndim and all(s is None or s == d for s, d in zip(shape, data.shape))
        if not ok:
            raise DataModelError(path, f"HDU {extname!r} has shape {data.shape}, expected {shape}")
    return data
