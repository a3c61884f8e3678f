"""The lifetime of one library handle (context, operation, mailbox).

The C rule is: a handle must not be freed while another thread is inside a
call on it; cancel that call first. This class makes that automatic: every
call through the binding is counted, and :meth:`close` from any thread
marks the handle closed (new calls fail at once), cancels the calls still
running with the handle's cancel function until they have returned, and
only then frees it. ``__del__`` frees a handle the host forgot to close
(the free functions never block and work on any thread).
"""

from __future__ import annotations

import threading
from threading import get_ident
from ctypes import c_void_p
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, TypeVar

from .codes import INVALID_ARGUMENT

if TYPE_CHECKING:
    from .library import Library

_CANCEL_RETRY_S = 0.05

H = TypeVar("H", bound="Handle")


class Handle:
    _kind = "handle"  # for messages: "context", "operation", "mailbox"
    _free_fn = ""  # the export that frees it
    _cancel_fn = ""  # the export that cancels the calls running on it

    def __init__(self, library: "Library", handle: c_void_p) -> None:
        self._lib = library
        self._handle: Optional[c_void_p] = handle
        self._cond = threading.Condition(threading.Lock())
        self._busy = 0
        self._threads: Dict[int, int] = {}  # thread id -> calls it is inside on this handle

    # -- for the subclasses ------------------------------------------------

    def _call(self, name: str, *args: Any, allow: Tuple[int, ...] = (0,)) -> int:
        """Calls export `name` with this handle first; raises on failure.
        The last error is read right after the call, on this thread."""
        fn = self._lib.fn(name)
        h = self._enter(name)
        try:
            rc: int = fn(h, *args)
        finally:
            self._exit()
        if rc in allow:
            return rc
        raise self._lib.error(rc, name)

    def _enter(self, function: str) -> c_void_p:
        tid = get_ident()
        with self._cond:
            h = self._handle
            if h is None:
                from ._convert import binding_error

                raise binding_error(INVALID_ARGUMENT, f"the {self._kind} is closed", function)
            self._busy += 1
            self._threads[tid] = self._threads.get(tid, 0) + 1
        return h

    def _exit(self) -> None:
        tid = get_ident()
        with self._cond:
            self._busy -= 1
            n = self._threads[tid] - 1
            if n:
                self._threads[tid] = n
            else:
                del self._threads[tid]
            if self._handle is None:  # close() waits for the calls to drain
                self._cond.notify_all()

    # -- public ----------------------------------------------------------------

    @property
    def handle(self) -> Optional[c_void_p]:
        """The C pointer (``c_void_p``), ``None`` once closed. For calls through ``Library.raw``."""
        return self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Cancels calls still running on this handle (any thread), waits for
        them to return, and frees it. Closing twice is a no-op."""
        if get_ident() in self._threads:
            raise RuntimeError(f"close() of a {self._kind} from inside a call on it (a callback)")
        with self._cond:
            h = self._handle
            if h is None:
                return
            self._handle = None
            cancel: Optional[Callable[[c_void_p], int]] = (
                getattr(self._lib.raw, self._cancel_fn) if self._cancel_fn and self._lib.has(self._cancel_fn)
                else None)
            while self._busy:
                if cancel is not None:
                    cancel(h)
                self._cond.wait(_CANCEL_RETRY_S)
        getattr(self._lib.raw, self._free_fn)(h)

    free = close  # the C name

    def __enter__(self: H) -> H:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            h = self.__dict__.get("_handle")
            if h is not None and h.value:
                self.__dict__["_handle"] = None
                getattr(self._lib.raw, self._free_fn)(h)
        except Exception:  # interpreter shutdown: the module may be gone
            pass

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else hex(self._handle.value or 0)
        return f"<mailoauth {self._kind} {state}>"
