"""An open IMAP or POP3 folder: poll, fetch, acknowledge, wait for new mail."""

from __future__ import annotations

import ctypes
from ctypes import c_int64, c_void_p
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ._convert import PathIn, Text, integer, path_in, utf8
from ._handle import Handle
from .codes import OK, TIMEOUT

if TYPE_CHECKING:
    from .context import Context
    from .library import Library


class Mailbox(Handle):
    """A ``mailoauth_mailbox`` from :meth:`Context.mailbox_open`. Close it (or use ``with``).

    Delivery is at-least-once: a message comes back from :meth:`poll` until it
    is acknowledged with :meth:`ack`. Calls on one mailbox are serialised by
    the library; :meth:`cancel` (any thread) makes a running call raise
    ``CANCELLED``; :meth:`close` from another thread cancels and then frees.
    """

    _kind = "mailbox"
    _free_fn = "mailoauth_mailbox_free"
    _cancel_fn = "mailoauth_mailbox_cancel"

    def __init__(self, library: "Library", handle: c_void_p, context: Optional["Context"] = None) -> None:
        super().__init__(library, handle)
        self._context = context  # the poll state may live in the context's host store

    def poll(self, max_messages: int = 100) -> List[Dict[str, Any]]:
        """The messages not acknowledged yet, oldest first: ``[{"id", "size",
        "from", "to", "subject", "date", "message_id"}]``."""
        out = c_void_p()
        self._call("mailoauth_mailbox_poll", integer(max_messages, "max_messages"), ctypes.byref(out))
        return self._lib._take_list(out, "mailoauth_mailbox_poll")

    def fetch(self, message_id: Text) -> bytes:
        """The raw RFC 5322 bytes of one message (``TOO_LARGE`` beyond the configured limit)."""
        p = c_void_p()
        n = c_int64(-1)
        self._call("mailoauth_mailbox_fetch", utf8(message_id, "message id", "mailoauth_mailbox_fetch"),
                   ctypes.byref(p), ctypes.byref(n))
        return self._lib._take_bytes(p, n)

    def fetch_to_file(self, message_id: Text, path: PathIn) -> None:
        """Streams one message to a file (written with this process's rights)."""
        f = "mailoauth_mailbox_fetch_to_file"
        self._call(f, utf8(message_id, "message id", f), path_in(path, "path", f))

    def ack(self, message_id: Text, action: Text = "keep") -> None:
        """Acknowledges a message: ``seen``, ``delete``, ``move:<folder>`` (IMAP) or ``keep``."""
        f = "mailoauth_mailbox_ack"
        self._call(f, utf8(message_id, "message id", f), utf8(action, "action", f))

    def wait(self, timeout_ms: int = -1) -> bool:
        """True when new mail may be there, False when none came (``TIMEOUT``);
        raises on a failed connection or ``CANCELLED``."""
        return self._call("mailoauth_mailbox_wait", integer(timeout_ms, "timeout_ms"), allow=(OK, TIMEOUT)) == OK

    def list_folders(self) -> List[Dict[str, Any]]:
        """IMAP folders: ``[{"name", "delimiter", "special"}]``."""
        out = c_void_p()
        self._call("mailoauth_mailbox_list_folders", ctypes.byref(out))
        return self._lib._take_list(out, "mailoauth_mailbox_list_folders")

    def cancel(self) -> None:
        """Makes the call running on this mailbox (any thread) return ``CANCELLED``."""
        self._call("mailoauth_mailbox_cancel")
