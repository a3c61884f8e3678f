"""ctypes binding for libmailoauth (the C ABI in include/mailoauth.h).

This is how a script host uses the library, and the seed of the Python
binding. Two layers:

- ``Library.raw``: the ``ctypes.CDLL`` with ``argtypes``/``restype`` set for
  every export this build has. Use it for boundary tests (NULL pointers,
  invalid UTF-8, foreign handles).
- ``Library`` / ``Context`` / ``Operation``: a small Pythonic layer. Strings
  go in and come out as UTF-8; JSON goes in as ``dict``/``str`` and comes out
  parsed; a failure raises :class:`MailOAuthError` carrying the code, its
  name, the message and the thread's last-error JSON; tokens are copied into
  a Python ``str`` and the library's buffer is released with
  ``mailoauth_secret_free`` (which zeroes it).

Exports that this build of the library lacks are left out of ``raw``;
``Library.has(name)`` tells, and calling a wrapper that needs one raises
:class:`MissingExport` (a subclass of ``AttributeError``).

The last error is thread-local in the library: read it on the thread that
made the failing call, right after it, as :func:`Library.check` does.
ctypes releases the GIL around every foreign call, so threads really run in
parallel inside the library; callbacks (logger, host store) take the GIL
again while they run.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_char_p,
    c_int32,
    c_int64,
    c_uint8,
    c_uint32,
    c_void_p,
)
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

# The ABI this binding was written against (MAILOAUTH_ABI_VERSION of the header).
ABI_VERSION = 1

# Result codes (ABI.md "Result codes").
OK = 0
PENDING = 1
INVALID_ARGUMENT = 100
INVALID_CONFIG = 101
ABI_MISMATCH = 102
INVALID_STATE = 103
BUSY = 104
CONSENT_REQUIRED = 200
CANCELLED = 201
TIMEOUT = 202
DECLINED = 203
PROVIDER_ERROR = 204
THROTTLED = 205
ACCOUNT_MISMATCH = 206
NETWORK = 300
TLS = 301
PROTOCOL = 302
AUTH_REJECTED = 303
MAILBOX_ACCESS_DENIED = 304
SEND_REJECTED = 305
NOT_FOUND = 306
TOO_LARGE = 307
UNTRUSTED_HOST = 308
CACHE_IO = 400
CACHE_CORRUPT = 401
CACHE_VERSION = 402
INTERNAL = 900

TOKEN_FORCE_REFRESH = 1

# Log levels.
LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_TRACE = 1, 2, 3, 4, 5

# Opaque handle types are plain void pointers on this side.
ctx_p = c_void_p
op_p = c_void_p
blob_p = c_void_p
mb_p = c_void_p

# Callback types (the typedefs of the header).
LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_char_p)
STORE_LOAD_FN = CFUNCTYPE(c_int32, c_void_p, c_char_p, c_void_p)
STORE_SAVE_FN = CFUNCTYPE(c_int32, c_void_p, c_char_p, POINTER(c_uint8), c_int64)
STORE_LOCK_FN = CFUNCTYPE(c_int32, c_void_p, c_char_p, c_int32, c_int32)

# name: (restype, argtypes). Output strings are c_void_p (not c_char_p) so
# that the pointer survives to be freed.
_EXPORTS: dict[str, tuple[Any, list]] = {
    # library
    "mailoauth_version": (c_char_p, []),
    "mailoauth_abi_version": (c_uint32, []),
    "mailoauth_result_str": (c_char_p, [c_int32]),
    "mailoauth_last_error": (c_int32, [POINTER(c_void_p)]),
    "mailoauth_last_error_message": (c_int32, [c_void_p, c_int32]),
    "mailoauth_string_free": (None, [c_void_p]),
    "mailoauth_secret_free": (None, [c_void_p]),
    "mailoauth_bytes_free": (None, [c_void_p, c_int64]),
    "mailoauth_set_logger": (c_int32, [c_int32, LOG_FN, c_void_p]),
    # context
    "mailoauth_context_new": (c_int32, [c_char_p, c_uint32, POINTER(ctx_p)]),
    "mailoauth_context_describe": (c_int32, [ctx_p, POINTER(c_void_p)]),
    "mailoauth_context_cancel": (c_int32, [ctx_p]),
    "mailoauth_context_free": (None, [ctx_p]),
    "mailoauth_context_set_cache_key": (c_int32, [ctx_p, c_void_p, c_int64]),
    "mailoauth_cache_reset": (c_int32, [ctx_p]),
    # host store
    "mailoauth_context_set_store": (
        c_int32,
        [ctx_p, STORE_LOAD_FN, STORE_SAVE_FN, STORE_LOCK_FN, c_void_p],
    ),
    "mailoauth_blob_set": (c_int32, [blob_p, c_void_p, c_int64]),
    # tokens and accounts
    "mailoauth_token_get": (c_int32, [ctx_p, c_char_p, c_char_p, c_int32, POINTER(c_void_p)]),
    "mailoauth_account_list": (c_int32, [ctx_p, POINTER(c_void_p)]),
    "mailoauth_account_remove": (c_int32, [ctx_p, c_char_p]),
    # consent
    "mailoauth_consent_begin": (c_int32, [ctx_p, c_char_p, POINTER(op_p)]),
    "mailoauth_account_test_begin": (c_int32, [ctx_p, c_char_p, POINTER(op_p)]),
    "mailoauth_op_wait": (c_int32, [op_p, c_int32]),
    "mailoauth_op_info": (c_int32, [op_p, POINTER(c_void_p)]),
    "mailoauth_op_result": (c_int32, [op_p, POINTER(c_void_p)]),
    "mailoauth_op_cancel": (c_int32, [op_p]),
    "mailoauth_op_free": (None, [op_p]),
    # SMTP
    "mailoauth_smtp_send": (c_int32, [ctx_p, c_char_p, POINTER(c_void_p)]),
    "mailoauth_smtp_send_mime": (c_int32, [ctx_p, c_char_p, c_void_p, c_int64, POINTER(c_void_p)]),
    "mailoauth_smtp_forward": (c_int32, [ctx_p, c_char_p, c_void_p, c_int64, POINTER(c_void_p)]),
    # mailboxes
    "mailoauth_mailbox_open": (c_int32, [ctx_p, c_char_p, POINTER(mb_p)]),
    "mailoauth_mailbox_poll": (c_int32, [mb_p, c_int32, POINTER(c_void_p)]),
    "mailoauth_mailbox_fetch": (c_int32, [mb_p, c_char_p, POINTER(c_void_p), POINTER(c_int64)]),
    "mailoauth_mailbox_fetch_to_file": (c_int32, [mb_p, c_char_p, c_char_p]),
    "mailoauth_mailbox_ack": (c_int32, [mb_p, c_char_p, c_char_p]),
    "mailoauth_mailbox_wait": (c_int32, [mb_p, c_int32]),
    "mailoauth_mailbox_list_folders": (c_int32, [mb_p, POINTER(c_void_p)]),
    "mailoauth_mailbox_cancel": (c_int32, [mb_p]),
    "mailoauth_mailbox_free": (None, [mb_p]),
}


class MissingExport(AttributeError):
    """The loaded library does not export a function this call needs."""


class MailOAuthError(Exception):
    """A call returned a result code other than OK (or PENDING where allowed).

    ``code``/``name``: the result code and its name; ``message``: the
    library's message; ``error``: the whole last-error JSON as a dict
    (``provider_code``, ``retry_after_s``, … when known); ``function``: the
    export that failed.
    """

    def __init__(self, code: int, name: str, message: str, error: dict, function: str = ""):
        self.code = code
        self.name = name
        self.message = message
        self.error = error
        self.function = function
        super().__init__(f"{function}: {code} {name}: {message}" if function else f"{code} {name}: {message}")

    def __getattr__(self, key: str) -> Any:
        # e.provider_code, e.retry_after_s, … (None when the library did not say)
        if key.startswith("_"):
            raise AttributeError(key)
        return self.__dict__.get("error", {}).get(key)


def default_library_path() -> str:
    """$MAILOAUTH_LIB, else <repo>/target/debug/libmailoauth.so (or $CARGO_TARGET_DIR)."""
    env = os.environ.get("MAILOAUTH_LIB")
    if env:
        return env
    root = Path(__file__).resolve().parents[2]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or root / "target")
    if not target.is_absolute():
        target = root / target
    return str(target / "debug" / "libmailoauth.so")


def _in(s: Optional[Union[str, bytes]]) -> Optional[bytes]:
    """A Python string as NUL-terminated UTF-8 (bytes pass through untouched)."""
    if s is None or isinstance(s, bytes):
        return s
    return s.encode("utf-8")


def _json_in(v: Union[str, bytes, dict, list]) -> bytes:
    if isinstance(v, (dict, list)):
        v = json.dumps(v)
    return _in(v)


class Library:
    """The loaded library. One per process is enough (``Library.load()``)."""

    _shared: Optional["Library"] = None
    _shared_lock = threading.Lock()

    def __init__(self, path: Optional[str] = None):
        self.path = path or default_library_path()
        self.raw = ctypes.CDLL(self.path)
        self._available: set[str] = set()
        for name, (restype, argtypes) in _EXPORTS.items():
            try:
                fn = getattr(self.raw, name)
            except AttributeError:
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            self._available.add(name)
        self._logger_ref = None  # keeps the installed CFUNCTYPE alive

    @classmethod
    def load(cls, path: Optional[str] = None) -> "Library":
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls(path)
            return cls._shared

    # -- plumbing --------------------------------------------------------

    def has(self, name: str) -> bool:
        return name in self._available

    def fn(self, name: str):
        if name not in self._available:
            raise MissingExport(f"{self.path} does not export {name}")
        return getattr(self.raw, name)

    def take_string(self, p: c_void_p) -> Optional[str]:
        """Copies a library string and frees it with mailoauth_string_free."""
        if not p.value:
            return None
        try:
            return ctypes.string_at(p.value).decode("utf-8")
        finally:
            self.raw.mailoauth_string_free(p)

    def take_secret(self, p: c_void_p) -> Optional[str]:
        """Copies a token and frees it with mailoauth_secret_free (zeroed)."""
        if not p.value:
            return None
        try:
            return ctypes.string_at(p.value).decode("utf-8")
        finally:
            self.raw.mailoauth_secret_free(p)

    def take_json(self, p: c_void_p) -> Any:
        s = self.take_string(p)
        return None if s is None else json.loads(s)

    def error(self, code: int, function: str = "") -> MailOAuthError:
        """The exception for `code`, with this thread's last error."""
        err = self.last_error()
        name = err.get("name") or self.result_str(code)
        if err.get("code") != code:
            # The call did not record its failure: keep what we know.
            err = dict(err, reported_code=err.get("code"))
            name = self.result_str(code)
        return MailOAuthError(code, name, err.get("message", ""), err, function)

    def check(self, code: int, function: str = "", allow=(OK,)) -> int:
        if code in allow:
            return code
        raise self.error(code, function)

    def call(self, name: str, *args, allow=(OK,)) -> int:
        return self.check(self.fn(name)(*args), name, allow)

    # -- library functions -------------------------------------------------

    def version(self) -> str:
        return self.raw.mailoauth_version().decode("utf-8")

    def abi_version(self) -> int:
        return self.raw.mailoauth_abi_version()

    def result_str(self, code: int) -> str:
        return self.raw.mailoauth_result_str(code).decode("utf-8")

    def last_error(self) -> dict:
        out = c_void_p()
        rc = self.raw.mailoauth_last_error(ctypes.byref(out))
        if rc != OK:
            return {"code": rc, "name": self.result_str(rc), "message": "mailoauth_last_error failed"}
        return self.take_json(out)

    def last_error_message(self) -> str:
        need = self.raw.mailoauth_last_error_message(None, 0)
        buf = ctypes.create_string_buffer(max(need, 1))
        self.raw.mailoauth_last_error_message(buf, len(buf))
        return buf.value.decode("utf-8")

    def set_logger(self, max_level: int, fn: Optional[Callable[[int, str], None]]) -> None:
        """Installs `fn(level, message)` as the process-wide logger (None: off).

        The CFUNCTYPE is kept alive here until it is replaced; the library
        guarantees no call of the old one runs once this returns.
        """
        if fn is None:
            self.call("mailoauth_set_logger", max_level, LOG_FN(), None)
            self._logger_ref = None
            return

        def trampoline(_user_data, level, message):
            try:
                fn(level, message.decode("utf-8", "replace") if message else "")
            except Exception:  # a callback must never raise into C
                pass

        cb = LOG_FN(trampoline)
        self.call("mailoauth_set_logger", max_level, cb, None)
        self._logger_ref = cb

    def blob_set(self, sink: int, data: bytes) -> None:
        """From inside a host-store load callback: hand `data` to `sink`."""
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        self.call("mailoauth_blob_set", sink, buf, len(data))

    def context(self, config: Union[str, bytes, dict], abi_version: int = ABI_VERSION) -> "Context":
        return Context(self, config, abi_version)


class Context:
    """A mailoauth_context. Use as a context manager or call ``free()``."""

    def __init__(self, lib: Library, config: Union[str, bytes, dict], abi_version: int = ABI_VERSION):
        self.lib = lib
        h = ctx_p()
        lib.call("mailoauth_context_new", _json_in(config), abi_version, ctypes.byref(h))
        self.handle = h
        self._store_refs = None  # keeps the host-store CFUNCTYPEs alive

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc) -> None:
        self.free()

    def free(self) -> None:
        if self.handle is not None and self.handle.value:
            self.lib.raw.mailoauth_context_free(self.handle)
        self.handle = None
        self._store_refs = None

    def _out_call(self, name: str, *args) -> c_void_p:
        out = c_void_p()
        self.lib.call(name, self.handle, *args, ctypes.byref(out))
        return out

    def describe(self) -> dict:
        return self.lib.take_json(self._out_call("mailoauth_context_describe"))

    def cancel(self) -> None:
        self.lib.call("mailoauth_context_cancel", self.handle)

    def set_cache_key(self, key: bytes) -> None:
        buf = ctypes.create_string_buffer(key, len(key))
        self.lib.call("mailoauth_context_set_cache_key", self.handle, buf, len(key))

    def cache_reset(self) -> None:
        self.lib.call("mailoauth_cache_reset", self.handle)

    def token_get(
        self,
        account: Union[str, bytes],
        protocols: Union[None, str, Iterable[str]] = None,
        flags: int = 0,
    ) -> str:
        """An access token (str); the library's copy is zeroed and freed."""
        if protocols is not None and not isinstance(protocols, (str, bytes)):
            protocols = " ".join(protocols)
        out = c_void_p()
        self.lib.call(
            "mailoauth_token_get", self.handle, _in(account), _in(protocols), flags, ctypes.byref(out)
        )
        return self.lib.take_secret(out)

    def account_list(self) -> list:
        return self.lib.take_json(self._out_call("mailoauth_account_list"))

    def account_remove(self, account: Union[str, bytes]) -> None:
        self.lib.call("mailoauth_account_remove", self.handle, _in(account))

    def consent_begin(self, request: Union[str, bytes, dict]) -> "Operation":
        h = op_p()
        self.lib.call("mailoauth_consent_begin", self.handle, _json_in(request), ctypes.byref(h))
        return Operation(self.lib, h)

    def account_test_begin(self, request: Union[str, bytes, dict]) -> "Operation":
        h = op_p()
        self.lib.call("mailoauth_account_test_begin", self.handle, _json_in(request), ctypes.byref(h))
        return Operation(self.lib, h)

    def smtp_send(self, request: Union[str, bytes, dict]) -> dict:
        """Sends a message built from the request; the result JSON as a dict."""
        return self.lib.take_json(self._out_call("mailoauth_smtp_send", _json_in(request)))

    def smtp_send_mime(self, request: Union[str, bytes, dict], mime: bytes) -> dict:
        """Sends the host's RFC 5322 bytes; the result JSON as a dict."""
        buf = ctypes.create_string_buffer(mime, len(mime)) if mime else None
        return self.lib.take_json(
            self._out_call("mailoauth_smtp_send_mime", _json_in(request), buf, len(mime))
        )

    def smtp_forward(self, request: Union[str, bytes, dict], original: bytes) -> dict:
        """Forwards a polled message (its bytes); the result JSON as a dict."""
        buf = ctypes.create_string_buffer(original, len(original)) if original else None
        return self.lib.take_json(
            self._out_call("mailoauth_smtp_forward", _json_in(request), buf, len(original))
        )

    def mailbox_open(self, request: Union[str, bytes, dict]) -> "Mailbox":
        """mailoauth_mailbox_open: free the mailbox (or use ``with``)."""
        h = mb_p()
        self.lib.call("mailoauth_mailbox_open", self.handle, _json_in(request), ctypes.byref(h))
        return Mailbox(self.lib, h, self)

    def set_store(
        self,
        load: Optional[Callable[[str, int], int]],
        save: Optional[Callable[[str, bytes], int]],
        lock: Optional[Callable[[str, bool, int], int]] = None,
    ) -> None:
        """Routes the cache through host callbacks (all None: back to files).

        - ``load(key, sink) -> int``: call ``lib.blob_set(sink, data)`` when
          there is a blob; return 0 (non-zero becomes CACHE_IO).
        - ``save(key, data) -> int``: store `data` (empty bytes: delete).
        - ``lock(key, lock: bool, timeout_ms) -> int``: 0 when had/released.

        An exception in a callback is returned to the library as -1.
        """
        if load is None and save is None:
            self.lib.call(
                "mailoauth_context_set_store", self.handle, STORE_LOAD_FN(), STORE_SAVE_FN(), STORE_LOCK_FN(), None
            )
            self._store_refs = None
            return

        def c_load(_ud, key, sink):
            try:
                return int(load(key.decode("utf-8"), sink))
            except Exception:
                return -1

        def c_save(_ud, key, data, length):
            try:
                blob = ctypes.string_at(data, length) if length > 0 else b""
                return int(save(key.decode("utf-8"), blob))
            except Exception:
                return -1

        def c_lock(_ud, key, do_lock, timeout_ms):
            try:
                return int(lock(key.decode("utf-8"), bool(do_lock), timeout_ms))
            except Exception:
                return -1

        refs = (
            STORE_LOAD_FN(c_load),
            STORE_SAVE_FN(c_save),
            STORE_LOCK_FN(c_lock) if lock is not None else STORE_LOCK_FN(),
        )
        self.lib.call("mailoauth_context_set_store", self.handle, *refs, None)
        self._store_refs = refs


class Operation:
    """A mailoauth_op (consent, account test). Free it (or use ``with``)."""

    def __init__(self, lib: Library, handle: op_p):
        self.lib = lib
        self.handle = handle

    def __enter__(self) -> "Operation":
        return self

    def __exit__(self, *exc) -> None:
        self.free()

    def wait(self, timeout_ms: int = -1) -> int:
        """OK when done, PENDING while running; raises on the op's failure."""
        return self.lib.call("mailoauth_op_wait", self.handle, timeout_ms, allow=(OK, PENDING))

    def info(self) -> dict:
        out = c_void_p()
        self.lib.call("mailoauth_op_info", self.handle, ctypes.byref(out))
        return self.lib.take_json(out)

    def result(self) -> dict:
        out = c_void_p()
        self.lib.call("mailoauth_op_result", self.handle, ctypes.byref(out))
        return self.lib.take_json(out)

    def cancel(self) -> None:
        self.lib.call("mailoauth_op_cancel", self.handle)

    def free(self) -> None:
        if self.handle is not None and self.handle.value:
            self.lib.raw.mailoauth_op_free(self.handle)
        self.handle = None


class Mailbox:
    """A mailoauth_mailbox (IMAP or POP3 folder). Free it (or use ``with``).

    Keeps its Context object referenced so that Python does not free the
    context first (the library would cope: handles may be freed in any order).
    """

    def __init__(self, lib: Library, handle: mb_p, ctx: Optional[Context] = None):
        self.lib = lib
        self.handle = handle
        self._ctx = ctx

    def __enter__(self) -> "Mailbox":
        return self

    def __exit__(self, *exc) -> None:
        self.free()

    def poll(self, max_messages: int = 100) -> list:
        out = c_void_p()
        self.lib.call("mailoauth_mailbox_poll", self.handle, max_messages, ctypes.byref(out))
        return self.lib.take_json(out)

    def fetch(self, msg_id: Union[str, bytes]) -> bytes:
        """The message's bytes (the library's buffer is freed with mailoauth_bytes_free)."""
        p = c_void_p()
        n = c_int64(-1)
        self.lib.call("mailoauth_mailbox_fetch", self.handle, _in(msg_id), ctypes.byref(p), ctypes.byref(n))
        try:
            return ctypes.string_at(p.value, n.value) if n.value > 0 else b""
        finally:
            self.lib.raw.mailoauth_bytes_free(p, n)

    def fetch_to_file(self, msg_id: Union[str, bytes], path: Union[str, bytes, os.PathLike]) -> None:
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        self.lib.call("mailoauth_mailbox_fetch_to_file", self.handle, _in(msg_id), _in(path))

    def ack(self, msg_id: Union[str, bytes], action: Union[str, bytes] = "keep") -> None:
        self.lib.call("mailoauth_mailbox_ack", self.handle, _in(msg_id), _in(action))

    def wait(self, timeout_ms: int = -1) -> bool:
        """True when new mail may be there, False on TIMEOUT; raises otherwise."""
        rc = self.lib.call("mailoauth_mailbox_wait", self.handle, timeout_ms, allow=(OK, TIMEOUT))
        return rc == OK

    def list_folders(self) -> list:
        out = c_void_p()
        self.lib.call("mailoauth_mailbox_list_folders", self.handle, ctypes.byref(out))
        return self.lib.take_json(out)

    def cancel(self) -> None:
        self.lib.call("mailoauth_mailbox_cancel", self.handle)

    def free(self) -> None:
        if self.handle is not None and self.handle.value:
            self.lib.raw.mailoauth_mailbox_free(self.handle)
        self.handle = None
        self._ctx = None
