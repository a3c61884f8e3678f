"""The host store: the token cache and mailbox poll state in the host's own
storage (rows of the CRM's database), through callbacks.

Implement :class:`HostStore` (``load``/``save``) and optionally
:class:`LockingHostStore` (``lock``/``unlock``: one refresh at a time across
machines), then ``ctx.set_store(store)``. The blobs are opaque and already
protected; use cache protection ``key`` (``ctx.set_cache_key``) so every
machine can read them. Keys: ``grant:<account>``, ``poll:<account>/<protocol>/<folder>``.

The callbacks run on a thread that is inside a library call and must not
call into the library. An exception in one never unwinds into C: it is
logged on the ``mailoauth`` logger and returned to the library as ``-1``,
which the failing call reports as ``CACHE_IO`` (``BUSY`` for ``lock``).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import TYPE_CHECKING, Any, Dict, Optional, Protocol, Tuple, runtime_checkable

from . import _signatures as sig
from ._convert import InBuffer

if TYPE_CHECKING:
    from .library import Library

log = logging.getLogger("mailoauth")

#: What a callback returns to the library when the host's code raised.
CALLBACK_RAISED = -1


@runtime_checkable
class HostStore(Protocol):
    """Where the library keeps its blobs instead of files."""

    def load(self, key: str) -> Optional[bytes]:
        """The blob stored under `key`, or ``None`` (nothing stored)."""

    def save(self, key: str, data: bytes) -> None:
        """Stores `data` under `key`; empty `data` removes the blob."""


@runtime_checkable
class LockingHostStore(HostStore, Protocol):
    """A host store that also brackets every read-modify-write of one key."""

    def lock(self, key: str, timeout_ms: int) -> bool:
        """Takes the lock of `key` within `timeout_ms` (negative: a default); False: not had in time."""

    def unlock(self, key: str) -> None:
        """Releases the lock of `key`."""


def _raised(what: str, key: str, e: BaseException) -> int:
    log.warning("the host store's %s(%r) raised %s: %s; reported to the library as %d",
                what, key, type(e).__name__, e, CALLBACK_RAISED)
    return CALLBACK_RAISED


def callbacks(library: "Library", store: HostStore) -> Tuple[Any, Any, Any]:
    """The three C callbacks (load, save, lock) over `store`. Keep them alive
    for as long as the registration (the Context object does)."""
    if not (callable(getattr(store, "load", None)) and callable(getattr(store, "save", None))):
        raise TypeError("a host store needs load(key) and save(key, data) methods")
    locking = callable(getattr(store, "lock", None)) and callable(getattr(store, "unlock", None))

    def c_load(_ud: Any, key: bytes, sink: int) -> int:
        k = key.decode("utf-8", "replace")
        try:
            data = store.load(k)
            if data is None or len(data) == 0:
                return 0
            with InBuffer(data, "the loaded blob") as b:
                return int(library.raw.mailoauth_blob_set(sink, b.buf, b.len))
        except BaseException as e:  # noqa: B036 - nothing may unwind into C
            return _raised("load", k, e)

    def c_save(_ud: Any, key: bytes, data: Any, length: int) -> int:
        k = key.decode("utf-8", "replace")
        try:
            blob = ctypes.string_at(data, length) if length > 0 else b""
            store.save(k, blob)
            return 0
        except BaseException as e:  # noqa: B036
            return _raised("save", k, e)

    def c_lock(_ud: Any, key: bytes, lock: int, timeout_ms: int) -> int:
        k = key.decode("utf-8", "replace")
        try:
            if lock:
                return 0 if store.lock(k, timeout_ms) else 1  # type: ignore[attr-defined]
            store.unlock(k)  # type: ignore[attr-defined]
            return 0
        except BaseException as e:  # noqa: B036
            return _raised("lock" if lock else "unlock", k, e)

    return (sig.STORE_LOAD_FN(c_load), sig.STORE_SAVE_FN(c_save),
            sig.STORE_LOCK_FN(c_lock) if locking else sig.STORE_LOCK_FN())


class MemoryStore:
    """A :class:`LockingHostStore` in a ``dict`` (one process): for tests, and
    as the shape a database-backed store follows."""

    def __init__(self) -> None:
        self.blobs: Dict[str, bytes] = {}
        self._mutex = threading.Lock()
        self._locks: Dict[str, threading.Lock] = {}

    def load(self, key: str) -> Optional[bytes]:
        with self._mutex:
            return self.blobs.get(key)

    def save(self, key: str, data: bytes) -> None:
        with self._mutex:
            if data:
                self.blobs[key] = bytes(data)
            else:
                self.blobs.pop(key, None)

    def lock(self, key: str, timeout_ms: int) -> bool:
        with self._mutex:
            lk = self._locks.setdefault(key, threading.Lock())
        return lk.acquire(timeout=timeout_ms / 1000.0 if timeout_ms >= 0 else 30.0)

    def unlock(self, key: str) -> None:
        with self._mutex:
            lk = self._locks.get(key)
        if lk is not None and lk.locked():
            lk.release()
