"""Finding libmailoauth: ``$MAILOAUTH_LIBRARY``, then next to this package,
then the system's loader (``LD_LIBRARY_PATH``, the rpath, ``PATH`` on Windows)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path
from typing import List

from .errors import LibraryNotFoundError

ENV = "MAILOAUTH_LIBRARY"


def _file_names() -> List[str]:
    if sys.platform == "win32":
        return ["mailoauth.dll"]
    if sys.platform == "darwin":
        return ["libmailoauth.dylib"]
    return ["libmailoauth.so"]


def find_library() -> str:
    """The path (or loader name) the binding loads.

    1. ``$MAILOAUTH_LIBRARY``: used as it is, no fallback (a wrong path is an error);
    2. a ``libmailoauth.so`` / ``mailoauth.dll`` beside this package's files;
    3. the system loader: ``ctypes.util.find_library("mailoauth")``, else the
       plain file name, which ``dlopen``/``LoadLibrary`` resolve themselves.
    """
    env = os.environ.get(ENV)
    if env:
        return env
    here = Path(__file__).resolve().parent
    for name in _file_names():
        p = here / name
        if p.is_file():
            return str(p)
    found = ctypes.util.find_library("mailoauth")
    return found or _file_names()[0]


def open_library(path: str) -> ctypes.CDLL:
    """``ctypes.CDLL`` (cdecl, also on 32-bit Windows) or :class:`LibraryNotFoundError`."""
    try:
        return ctypes.CDLL(path)
    except OSError as e:
        hint = f"set {ENV} to the library's full path" if not os.environ.get(ENV) else f"check {ENV}"
        raise LibraryNotFoundError(f"cannot load libmailoauth from {path!r}: {e}; {hint}") from None
