"""The loaded library: ABI check, last error, freeing returned memory, the logger."""

from __future__ import annotations

import ctypes
import json
import logging
import sys
import threading
from ctypes import c_void_p
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

from . import _signatures as sig
from ._convert import BytesIn, InBuffer, integer
from ._loader import find_library, open_library
from .codes import ABI_MISMATCH, ABI_VERSION, OK, LogLevel, Result
from .errors import AbiMismatchError, LibraryNotFoundError, MailOAuthError, MissingExport

log = logging.getLogger("mailoauth")

LogCallback = Callable[[int, str], None]

# The installed logger's CFUNCTYPE per loaded library file: the logger is one
# per process, so its keep-alive must not depend on which Library object set it.
_logger_refs: Dict[str, Any] = {}
_logger_lock = threading.Lock()


class Library:
    """libmailoauth loaded through ctypes. One per process is enough: :meth:`load`.

    ``raw`` is the ``ctypes.CDLL`` with ``argtypes``/``restype`` set for every
    export this build has (for boundary tests and for calls the binding does
    not wrap); :meth:`has` tells whether an export is there. Loading checks
    that the library implements at least the ABI this binding needs
    (:class:`AbiMismatchError` otherwise).
    """

    _shared: Optional["Library"] = None
    _shared_lock = threading.Lock()

    def __init__(self, path: Optional[str] = None, *, abi_version: int = ABI_VERSION) -> None:
        self.path: str = path or find_library()
        self.raw = open_library(self.path)
        self._available = set()
        for name, (restype, argtypes) in sig.EXPORTS.items():
            try:
                fn = getattr(self.raw, name)
            except AttributeError:
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            self._available.add(name)
        missing = [n for n in sig.REQUIRED if n not in self._available]
        if missing:
            raise LibraryNotFoundError(f"{self.path} is not libmailoauth (no {', '.join(missing)})")
        have = int(self.raw.mailoauth_abi_version())
        if have < abi_version:
            msg = (f"{self.path} implements C ABI {have}; this binding needs {abi_version} "
                   f"(library {self.version()})")
            name = Result(ABI_MISMATCH).name
            raise AbiMismatchError(ABI_MISMATCH, name, msg,
                                   {"code": int(ABI_MISMATCH), "name": name, "message": msg,
                                    "hint": "install the libmailoauth that came with this binding, or a newer one",
                                    "source": "binding"})

    @classmethod
    def load(cls, path: Optional[str] = None) -> "Library":
        """The process's shared instance (loaded on first use from `path` or :func:`find_library`)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls(path)
            return cls._shared

    # -- plumbing ----------------------------------------------------------------

    def has(self, name: str) -> bool:
        """Whether this build exports `name`."""
        return name in self._available

    def fn(self, name: str) -> Any:
        if name not in self._available:
            raise MissingExport(f"{self.path} does not export {name}")
        return getattr(self.raw, name)

    def error(self, code: int, function: str = "") -> MailOAuthError:
        """The exception for `code`, built from this thread's last error."""
        err = self.last_error()
        name = err.get("name") or self.result_str(code)
        if err.get("code") != code:
            # The call did not record its failure: keep what we know.
            err = dict(err, reported_code=err.get("code"))
            name = self.result_str(code)
        return MailOAuthError(code, name, err.get("message", ""), err, function)

    def check(self, code: int, function: str = "", allow: Iterable[int] = (OK,)) -> int:
        """`code` when it is in `allow`, else raises :class:`MailOAuthError`."""
        if code in allow:
            return code
        raise self.error(code, function)

    def call(self, name: str, *args: Any, allow: Iterable[int] = (OK,)) -> int:
        """Calls export `name` with `args` as they are; raises unless the code is in `allow`."""
        return self.check(self.fn(name)(*args), name, allow)

    def _take_string(self, p: c_void_p) -> Optional[str]:
        """Copies a returned string and frees it with mailoauth_string_free."""
        if not p.value:
            return None
        try:
            return ctypes.string_at(p.value).decode("utf-8")
        finally:
            self.raw.mailoauth_string_free(p)

    def _take_json(self, p: c_void_p) -> Any:
        s = self._take_string(p)
        return None if s is None else json.loads(s)

    def _take_dict(self, p: c_void_p, function: str) -> Dict[str, Any]:
        v = self._take_json(p)
        if not isinstance(v, dict):
            raise TypeError(f"{function} returned {type(v).__name__}, not a JSON object")
        return v

    def _take_list(self, p: c_void_p, function: str) -> List[Dict[str, Any]]:
        v = self._take_json(p)
        if not isinstance(v, list):
            raise TypeError(f"{function} returned {type(v).__name__}, not a JSON array")
        return v

    def _take_secret_str(self, p: c_void_p) -> Optional[str]:
        """Copies a token into a str and frees the library's with mailoauth_secret_free."""
        if not p.value:
            return None
        try:
            return ctypes.string_at(p.value).decode("utf-8")
        finally:
            self.raw.mailoauth_secret_free(p)

    def _take_secret(self, p: c_void_p) -> Optional[bytearray]:
        """Copies a token straight into a bytearray (no immutable copy on
        the way) and frees the library's with mailoauth_secret_free (zeroed)."""
        if not p.value:
            return None
        try:
            n = _strlen(p.value)
            out = bytearray(n)
            if n:
                ctypes.memmove((ctypes.c_char * n).from_buffer(out), p.value, n)
            return out
        finally:
            self.raw.mailoauth_secret_free(p)

    def _take_bytes(self, p: c_void_p, n: ctypes.c_int64) -> bytes:
        """Copies returned bytes and frees them with mailoauth_bytes_free."""
        try:
            return ctypes.string_at(p.value, n.value) if p.value and n.value > 0 else b""
        finally:
            self.raw.mailoauth_bytes_free(p, n)

    # -- library functions ---------------------------------------------------------

    def version(self) -> str:
        """The library's version, e.g. ``"0.1.0"``."""
        return str(self.raw.mailoauth_version().decode("utf-8"))

    def abi_version(self) -> int:
        """The C ABI version the library implements."""
        return int(self.raw.mailoauth_abi_version())

    def result_str(self, code: int) -> str:
        """The static English name of a result code."""
        return str(self.raw.mailoauth_result_str(code).decode("utf-8"))

    def last_error(self) -> Dict[str, Any]:
        """This thread's last error record (``{"code": 0, "name": "OK"}`` when none)."""
        out = c_void_p()
        rc = self.raw.mailoauth_last_error(ctypes.byref(out))
        if rc != OK:
            return {"code": rc, "name": self.result_str(rc), "message": "mailoauth_last_error failed"}
        return self._take_dict(out, "mailoauth_last_error")

    def last_error_message(self) -> str:
        """This thread's last error message (through mailoauth_last_error_message)."""
        need = self.fn("mailoauth_last_error_message")(None, 0)
        buf = ctypes.create_string_buffer(max(need, 1))
        self.raw.mailoauth_last_error_message(buf, len(buf))
        return buf.value.decode("utf-8")

    def set_logger(self, max_level: int, fn: Optional[LogCallback]) -> None:
        """Installs ``fn(level, message)`` as the process-wide logger (``None``: off).

        Messages never hold a secret. An exception in `fn` is swallowed (it
        must never unwind into C) and reported once per type on the Python
        logger ``mailoauth``. The callback is kept alive until it is
        replaced; the library guarantees that no call of the old one still
        runs when this returns. Use :func:`python_logging` to forward to
        the ``logging`` module.
        """
        if fn is None:
            self.call("mailoauth_set_logger", integer(max_level, "max_level"), sig.LOG_FN(), None)
            with _logger_lock:
                _logger_refs.pop(self.path, None)
            return
        if not callable(fn):
            raise TypeError("the logger must be callable or None")
        reported: Set[type] = set()

        def trampoline(_user_data: Any, level: int, message: Optional[bytes]) -> None:
            try:
                fn(level, message.decode("utf-8", "replace") if message else "")
            except BaseException as e:  # noqa: B036 - nothing may unwind into C
                if type(e) not in reported:
                    reported.add(type(e))
                    log.warning("the mailoauth logger callback raised %s: %s (ignored)", type(e).__name__, e)

        cb = sig.LOG_FN(trampoline)
        self.call("mailoauth_set_logger", integer(max_level, "max_level"), cb, None)
        with _logger_lock:
            _logger_refs[self.path] = cb  # the old one is released only now

    def blob_set(self, sink: int, data: BytesIn) -> None:
        """From inside a host-store load callback: hands `data` to `sink` (copied)."""
        with InBuffer(data, "data") as b:
            self.call("mailoauth_blob_set", sink, b.buf, b.len)

    def context(self, config: Any, abi_version: int = ABI_VERSION) -> Any:
        """A new :class:`mailoauth.Context` on this library."""
        from .context import Context

        return Context(config, library=self, abi_version=abi_version)


def _c_strlen() -> Any:
    try:
        libc = ctypes.cdll.msvcrt if sys.platform == "win32" else ctypes.CDLL(None)
        fn = libc.strlen
        fn.argtypes, fn.restype = [c_void_p], ctypes.c_size_t
        return fn
    except (OSError, AttributeError):
        return None


_libc_strlen = _c_strlen()


def _strlen(addr: int) -> int:
    """The C string's length without copying it into an immutable bytes object."""
    if _libc_strlen is not None:
        return int(_libc_strlen(addr))
    n = 0
    p = ctypes.cast(addr, ctypes.POINTER(ctypes.c_char))
    while p[n] != b"\0":  # single bytes are shared objects in CPython: no copy of the secret
        n += 1
    return n


def python_logging(logger: Optional[logging.Logger] = None) -> LogCallback:
    """A logger callback forwarding to the ``logging`` module (logger ``mailoauth.native``)."""
    target = logger or logging.getLogger("mailoauth.native")
    levels: Dict[int, int] = {LogLevel.ERROR: logging.ERROR, LogLevel.WARNING: logging.WARNING,
                              LogLevel.INFO: logging.INFO, LogLevel.DEBUG: logging.DEBUG, LogLevel.TRACE: 5}

    def forward(level: int, message: str) -> None:
        target.log(levels.get(level, logging.DEBUG), "%s", message)

    return forward
