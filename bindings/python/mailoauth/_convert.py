"""Conversions at the boundary: Python values to NUL-terminated UTF-8 and
JSON, byte buffers, and binding-side argument errors.

Rules:
- ``str`` is encoded as UTF-8; ``bytes`` pass through untouched, so a host
  (or a test) can hand the library invalid UTF-8 and get the library's own
  ``INVALID_ARGUMENT``; ``None`` becomes NULL.
- A NUL inside a string would silently cut it short in C, so it is refused
  here with ``INVALID_ARGUMENT`` before the call.
- Any other type is a programming error: ``TypeError``.
- A ``dict``/``list`` that ``json`` cannot serialise (a ``set``, an object,
  a circular reference, NaN) is ``INVALID_CONFIG`` before the call.
"""

from __future__ import annotations

import ctypes
import json
import operator
import os
from typing import Any, Dict, List, Optional, Union

from .codes import INVALID_ARGUMENT, INVALID_CONFIG, Result
from .errors import MailOAuthError

Text = Union[str, bytes]
JsonIn = Union[str, bytes, Dict[str, Any], List[Any]]
BytesIn = Union[bytes, bytearray, memoryview]
PathIn = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def binding_error(code: int, message: str, function: str = "") -> MailOAuthError:
    """An error found by the binding before calling the library."""
    name = Result(code).name
    return MailOAuthError(code, name, message, {"code": int(code), "name": name, "message": message,
                                                "source": "binding"}, function)


def utf8(value: Optional[Text], what: str, function: str = "") -> Optional[bytes]:
    """`value` as NUL-terminated UTF-8 for a ``const char *`` parameter."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            raise binding_error(INVALID_ARGUMENT, f"{what} is not valid Unicode (a lone surrogate)",
                                function) from None
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    if b"\0" in data:
        raise binding_error(INVALID_ARGUMENT, f"{what} contains a NUL character", function)
    return data


def json_in(value: JsonIn, what: str, function: str = "") -> bytes:
    """A configuration or request: ``dict``/``list`` serialised, ``str``/``bytes`` as given."""
    if isinstance(value, (dict, list)):
        try:
            value = json.dumps(value, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise binding_error(INVALID_CONFIG, f"{what} cannot be written as JSON: {e}", function) from None
    elif not isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"{what} must be a dict, list, str or bytes, not {type(value).__name__}")
    data = utf8(value, what, function)
    assert data is not None
    return data


def path_in(value: PathIn, what: str, function: str = "") -> bytes:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    data = utf8(value, what, function)
    if data is None:
        raise TypeError(f"{what} must not be None")
    return data


class InBuffer:
    """A ``(pointer, length)`` pair for a ``const uint8_t *`` parameter.

    With ``secret=True`` the bytes are copied into a ctypes buffer which
    :meth:`wipe` (and leaving the ``with`` block) overwrites with zeros after
    the call: keys and other secrets. An immutable ``bytes`` of the caller
    cannot be zeroed; a ``bytearray`` the caller can zero itself. Otherwise
    a ``bytes`` object is handed to the library as it is (no copy of a large
    message) and other buffers are copied once.
    """

    def __init__(self, data: Optional[BytesIn], what: str, secret: bool = False):
        self.buf: Any = None
        self.len = 0
        self._wipe = False
        if data is None:
            return
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{what} must be bytes, bytearray or memoryview, not {type(data).__name__}")
        if isinstance(data, bytes) and not secret:
            self.len = len(data)
            self.buf = data if data else None
            return
        mv = memoryview(data).cast("B")
        self.len = mv.nbytes
        if self.len:
            self.buf = (ctypes.c_uint8 * self.len).from_buffer_copy(mv)
            self._wipe = True

    def wipe(self) -> None:
        if self._wipe:
            ctypes.memset(self.buf, 0, self.len)

    def __enter__(self) -> "InBuffer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wipe()


def zero(buf: bytearray) -> None:
    """Overwrites a secret held in a ``bytearray`` (e.g. from ``token_get_bytes``) with zeros."""
    if not isinstance(buf, bytearray):
        raise TypeError("only a bytearray can be zeroed")
    for i in range(len(buf)):
        buf[i] = 0


def integer(value: Any, what: str) -> int:
    """An ``int`` argument (``TypeError`` for ``"1"``, ``1.5`` or ``None``)."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, not {type(value).__name__}") from None
