"""A long operation (consent, account test): wait, poll from a UI timer, cancel."""

from __future__ import annotations

import asyncio
import ctypes
import time
from ctypes import c_void_p
from typing import TYPE_CHECKING, Any, Dict, Optional

from ._convert import integer
from ._handle import Handle
from .codes import OK, PENDING

if TYPE_CHECKING:
    from .context import Context
    from .library import Library

# op_wait(-1) runs in slices of this length so that Ctrl-C and close() from
# another thread are seen while a consent waits for the user.
_WAIT_SLICE_MS = 500


class Operation(Handle):
    """A ``mailoauth_op``. Close it (or use ``with``); closing cancels it if it still runs.

    ``wait()`` blocks until it is done (``True``) or the timeout passed
    (``False``), and raises :class:`MailOAuthError` with the operation's
    failure (``DECLINED``, ``TIMEOUT``, ``CANCELLED``, ``ACCOUNT_MISMATCH`` …).
    ``poll()`` is ``wait(0)`` for a UI timer. ``result()`` is the JSON result.
    """

    _kind = "operation"
    _free_fn = "mailoauth_op_free"
    _cancel_fn = "mailoauth_op_cancel"

    def __init__(self, library: "Library", handle: c_void_p, context: Optional["Context"] = None) -> None:
        super().__init__(library, handle)
        # The grant is stored through the host store's callbacks on the thread
        # that sees the op finish: keep the context (and its callbacks) alive.
        self._context = context

    def _wait_rc(self, timeout_ms: int) -> int:
        """mailoauth_op_wait: OK or PENDING; raises on the op's failure."""
        return self._call("mailoauth_op_wait", timeout_ms, allow=(OK, PENDING))

    def wait(self, timeout_ms: int = -1) -> bool:
        """True when done; False when still running after `timeout_ms` (0: poll;
        negative: as long as the operation may take). Raises on failure. A
        ``KeyboardInterrupt`` cancels the operation."""
        timeout_ms = integer(timeout_ms, "timeout_ms")
        if 0 <= timeout_ms <= _WAIT_SLICE_MS:
            return self._wait_rc(timeout_ms) == OK
        end = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0
        try:
            while True:
                left = _WAIT_SLICE_MS if end is None else min(_WAIT_SLICE_MS, int((end - time.monotonic()) * 1000))
                if self._wait_rc(max(left, 0)) == OK:
                    return True
                if end is not None and time.monotonic() >= end:
                    return False
        except KeyboardInterrupt:
            self.cancel()
            raise

    def poll(self) -> bool:
        """True when done, False while running (never blocks); raises on failure."""
        return self._wait_rc(0) == OK

    async def wait_async(self) -> Dict[str, Any]:
        """Awaits the operation (in a worker thread) and returns :meth:`result`;
        cancelling the awaiting task cancels the operation."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.wait, -1)
        except asyncio.CancelledError:
            if not self.closed:
                self.cancel()
            raise
        return self.result()

    def _out(self, name: str) -> Dict[str, Any]:
        out = c_void_p()
        self._call(name, ctypes.byref(out))
        return self._lib._take_dict(out, name)

    def info(self) -> Dict[str, Any]:
        """``{"state", "authorize_url", "user_code", "verification_uri", "message", "expires_at"}`` (when known)."""
        return self._out("mailoauth_op_info")

    def result(self) -> Dict[str, Any]:
        """The finished operation's result; ``INVALID_STATE`` while it runs; its failure when it failed."""
        return self._out("mailoauth_op_result")

    def cancel(self) -> None:
        """Cancels it from any thread; a waiting ``wait()`` raises ``CANCELLED`` promptly."""
        self._call("mailoauth_op_cancel")
