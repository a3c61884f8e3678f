"""The host tests' ctypes wrapper: a compatibility layer over the Python
binding in bindings/python/mailoauth (the real package).

What the tests and benches use stays as it was:

- ``Library.raw``: the ``ctypes.CDLL`` with ``argtypes``/``restype`` set for
  every export this build has, for boundary tests (NULL pointers, invalid
  UTF-8, foreign handles); ``Library.has(name)``; ``call``/``check``/``error``;
  ``take_string``/``take_json``/``take_secret`` (a token as ``str``).
- ``Context(lib, config)`` / ``Operation`` / ``Mailbox`` from the package, with
  ``Operation.wait`` answering the result code (``OK``/``PENDING``) instead of a
  bool, and ``Context.set_store(load, save, lock)`` taking the raw-style
  callables ``load(key, sink) -> int`` (calling ``lib.blob_set(sink, data)``),
  ``save(key, data) -> int``, ``lock(key, lock: bool, timeout_ms) -> int``.
- The result codes, flags, log levels and callback types as module constants.
- ``default_library_path()``: ``$MAILOAUTH_LIB``, else ``<repo>/target/debug``.

New code should ``import mailoauth`` (``pip install bindings/python``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Union

_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(_ROOT / "bindings" / "python"))

import mailoauth as _pkg  # noqa: E402
from mailoauth._signatures import (  # noqa: E402,F401
    EXPORTS as _EXPORTS,
    LOG_FN,
    STORE_LOAD_FN,
    STORE_LOCK_FN,
    STORE_SAVE_FN,
    blob_p,
    ctx_p,
    mb_p,
    op_p,
)
from mailoauth.codes import *  # noqa: E402,F401,F403
from mailoauth.codes import ABI_VERSION, OK, PENDING  # noqa: E402
from mailoauth.errors import MailOAuthError, MissingExport  # noqa: E402,F401


def default_library_path() -> str:
    """$MAILOAUTH_LIB, else <repo>/target/debug/libmailoauth.so (or $CARGO_TARGET_DIR)."""
    env = os.environ.get("MAILOAUTH_LIB")
    if env:
        return env
    target = Path(os.environ.get("CARGO_TARGET_DIR") or _ROOT / "target")
    if not target.is_absolute():
        target = _ROOT / target
    return str(target / "debug" / "libmailoauth.so")


class Library(_pkg.Library):
    """The package's Library, loaded from ``default_library_path()`` by default."""

    _shared: Optional["Library"] = None  # not the package's shared instance

    def __init__(self, path: Optional[str] = None):
        super().__init__(path or default_library_path())

    def take_string(self, p: ctypes.c_void_p) -> Optional[str]:
        return self._take_string(p)

    def take_json(self, p: ctypes.c_void_p) -> Any:
        return self._take_json(p)

    def take_secret(self, p: ctypes.c_void_p) -> Optional[str]:
        return self._take_secret_str(p)

    def context(self, config: Union[str, bytes, dict], abi_version: int = ABI_VERSION) -> "Context":
        return Context(self, config, abi_version)


class Operation(_pkg.Operation):
    """Operation.wait answers OK when done, PENDING while running (raises on failure)."""

    @property
    def lib(self) -> _pkg.Library:
        return self._lib

    def wait(self, timeout_ms: int = -1) -> int:  # type: ignore[override]
        return OK if super().wait(timeout_ms) else PENDING


class Mailbox(_pkg.Mailbox):
    @property
    def lib(self) -> _pkg.Library:
        return self._lib


class Context(_pkg.Context):
    """``Context(lib, config)``; ``set_store`` with raw-style callables."""

    _operation_type = Operation
    _mailbox_type = Mailbox

    def __init__(self, lib: _pkg.Library, config: Union[str, bytes, dict], abi_version: int = ABI_VERSION):
        super().__init__(config, library=lib, abi_version=abi_version)

    @property
    def lib(self) -> _pkg.Library:
        return self._lib

    def set_store(  # type: ignore[override]
        self,
        load: Optional[Callable[[str, int], int]],
        save: Optional[Callable[[str, bytes], int]],
        lock: Optional[Callable[[str, bool, int], int]] = None,
    ) -> None:
        """Routes the cache through host callbacks (load and save None: back to files).

        - ``load(key, sink) -> int``: call ``lib.blob_set(sink, data)`` when
          there is a blob; return 0 (non-zero becomes CACHE_IO).
        - ``save(key, data) -> int``: store `data` (empty bytes: delete).
        - ``lock(key, lock: bool, timeout_ms) -> int``: 0 when had/released.

        An exception in a callback is returned to the library as -1.
        """
        if load is None and save is None:
            self._register_store(STORE_LOAD_FN(), STORE_SAVE_FN(), STORE_LOCK_FN())
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

        self._register_store(
            STORE_LOAD_FN(c_load),
            STORE_SAVE_FN(c_save),
            STORE_LOCK_FN(c_lock) if lock is not None else STORE_LOCK_FN(),
        )
