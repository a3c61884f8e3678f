"""A configured library instance: consent, tokens, accounts, SMTP, mailboxes, the host store."""

from __future__ import annotations

import ctypes
from ctypes import c_void_p
from typing import Any, Dict, Iterable, List, Optional, Union

from . import _signatures as sig
from ._convert import BytesIn, InBuffer, JsonIn, Text, binding_error, integer, json_in, utf8
from ._handle import Handle
from .codes import ABI_VERSION, TIMEOUT, TOKEN_FORCE_REFRESH
from .library import Library
from .mailbox import Mailbox
from .operation import Operation
from .store import HostStore, callbacks

Protocols = Union[None, str, bytes, Iterable[str]]


class Context(Handle):
    """A ``mailoauth_context``: use it as a context manager, or call :meth:`close`.

    `config` is the configuration (ABI.md "Context") as a ``dict`` or JSON
    text; every key is optional except ``client_id``. A context may be shared
    by any number of threads. :meth:`close` cancels what still runs on it.
    Requests and results are ``dict``s; failures raise :class:`MailOAuthError`.
    """

    _kind = "context"
    _free_fn = "mailoauth_context_free"
    _cancel_fn = "mailoauth_context_cancel"
    _operation_type = Operation
    _mailbox_type = Mailbox

    def __init__(self, config: JsonIn, *, library: Optional[Library] = None,
                 abi_version: int = ABI_VERSION) -> None:
        lib = library if library is not None else Library.load()
        f = "mailoauth_context_new"
        data = json_in(config, "the configuration", f)
        buf = ctypes.create_string_buffer(data, len(data) + 1)  # may hold a client_secret: wiped below
        h = c_void_p()
        try:
            lib.call(f, ctypes.cast(buf, ctypes.c_char_p), integer(abi_version, "abi_version"), ctypes.byref(h))
        finally:
            ctypes.memset(buf, 0, len(buf))
        super().__init__(lib, h)
        self._store_refs: Any = None  # the host store's CFUNCTYPEs: alive as long as this object

    @property
    def library(self) -> Library:
        return self._lib

    # -- context ---------------------------------------------------------------------

    def _out_dict(self, name: str, *args: Any) -> Dict[str, Any]:
        out = c_void_p()
        self._call(name, *args, ctypes.byref(out))
        return self._lib._take_dict(out, name)

    def describe(self) -> Dict[str, Any]:
        """The configuration as resolved (endpoints, scopes, servers …), never a secret."""
        return self._out_dict("mailoauth_context_describe")

    def cancel(self) -> None:
        """Cancels every call running on this context (any thread): they raise ``CANCELLED``."""
        self._call("mailoauth_context_cancel")

    def set_cache_key(self, key: BytesIn) -> None:
        """The 32-byte key of cache protection ``key``. The library copies it
        (and zeroes its copy on free); the binding's buffer is zeroed after the
        call. Pass a ``bytearray`` to be able to zero your own."""
        with InBuffer(key, "the cache key", secret=True) as b:
            self._call("mailoauth_context_set_cache_key", b.buf, b.len)

    def cache_reset(self) -> None:
        """Moves an unreadable store aside and starts empty."""
        self._call("mailoauth_cache_reset")

    # -- host store -------------------------------------------------------------------

    def set_store(self, store: Optional[HostStore]) -> None:
        """Routes the cache and poll state through `store` (``None``: back to files).
        See :mod:`mailoauth.store`."""
        if store is None:
            self._register_store(sig.STORE_LOAD_FN(), sig.STORE_SAVE_FN(), sig.STORE_LOCK_FN())
            return
        self._register_store(*callbacks(self._lib, store))

    def _register_store(self, load: Any, save: Any, lock: Any) -> None:
        self._call("mailoauth_context_set_store", load, save, lock, None)
        # Returns only when no callback of the previous registration runs; but
        # an operation or mailbox of this context may still use the previous
        # ones until it is freed, so they are kept as well.
        self._store_refs = (load, save, lock, self._store_refs)

    # -- consent, tokens, accounts ----------------------------------------------------

    def consent_begin(self, request: JsonIn) -> Operation:
        """Starts a consent (``{"account", "protocols", "flow": "browser" | "device" | "app", …}``);
        returns at once. With ``browser: none`` read the URL from ``op.info()["authorize_url"]``."""
        return self._begin("mailoauth_consent_begin", request)

    def consent(self, request: JsonIn, timeout_ms: int = -1) -> Dict[str, Any]:
        """Begins a consent, waits for it (at most `timeout_ms`: ``TIMEOUT``,
        the consent cancelled) and returns its result."""
        with self.consent_begin(request) as op:
            return self._finish(op, timeout_ms, "consent")

    def account_test_begin(self, request: JsonIn) -> Operation:
        """Starts the account test (``{"account", "protocols"}``): silent token, SMTP EHLO + AUTH,
        IMAP login + SELECT, POP3 login + STAT, without sending or changing anything."""
        return self._begin("mailoauth_account_test_begin", request)

    def account_test(self, request: JsonIn, timeout_ms: int = -1) -> List[Dict[str, Any]]:
        """Runs the account test; the steps ``[{"step", "code", "name", "message", "hint",
        "server_reply", "ms"}]`` (a failed step does not stop the others)."""
        with self.account_test_begin(request) as op:
            steps = self._finish(op, timeout_ms, "account test").get("steps", [])
            return list(steps)

    def _begin(self, name: str, request: JsonIn) -> Operation:
        h = c_void_p()
        self._call(name, json_in(request, "the request", name), ctypes.byref(h))
        return self._operation_type(self._lib, h, self)

    @staticmethod
    def _finish(op: Operation, timeout_ms: int, what: str) -> Dict[str, Any]:
        if not Operation.wait(op, timeout_ms):  # the bool form, also for subclasses
            op.cancel()
            raise binding_error(TIMEOUT, f"the {what} did not finish within {timeout_ms} ms (cancelled)",
                                "mailoauth_op_wait")
        return op.result()

    @staticmethod
    def _protocols(protocols: Protocols) -> Optional[Text]:
        if protocols is None or isinstance(protocols, (str, bytes)):
            return protocols
        return " ".join(protocols)

    def token_get(self, account: Text, protocols: Protocols = None, flags: int = 0) -> str:
        """A valid access token (cached, or silently refreshed); ``CONSENT_REQUIRED``
        when the user must sign in. `protocols`: ``"smtp imap"`` or an iterable;
        ``None`` = all. The library's copy is zeroed and freed; a ``str`` cannot
        be zeroed: use :meth:`token_get_bytes` where that matters."""
        out = self._token(account, protocols, flags)
        return self._lib._take_secret_str(out) or ""

    def token_get_bytes(self, account: Text, protocols: Protocols = None, flags: int = 0) -> bytearray:
        """As :meth:`token_get`, as a ``bytearray`` the caller zeroes (``mailoauth.zero``) after use."""
        return self._lib._take_secret(self._token(account, protocols, flags)) or bytearray()

    def _token(self, account: Text, protocols: Protocols, flags: int) -> c_void_p:
        f = "mailoauth_token_get"
        if isinstance(flags, bool):
            flags = TOKEN_FORCE_REFRESH if flags else 0
        out = c_void_p()
        self._call(f, utf8(account, "account", f), utf8(self._protocols(protocols), "protocols", f),
                   integer(flags, "flags"), ctypes.byref(out))
        return out

    def account_list(self) -> List[Dict[str, Any]]:
        """The cached accounts (``account``, ``state``, ``protocols``, …), never a secret."""
        out = c_void_p()
        self._call("mailoauth_account_list", ctypes.byref(out))
        return self._lib._take_list(out, "mailoauth_account_list")

    def account_remove(self, account: Text) -> None:
        """Signs `account` out: its grant is removed from the store (``NOT_FOUND`` if none)."""
        f = "mailoauth_account_remove"
        self._call(f, utf8(account, "account", f))

    # -- SMTP -----------------------------------------------------------------------------

    def smtp_send(self, request: JsonIn) -> Dict[str, Any]:
        """Sends ``{"account", "message": {"from", "to", "subject", "text", …}}``;
        returns ``{"message_id", "accepted", "server_reply"}``."""
        f = "mailoauth_smtp_send"
        return self._out_dict(f, json_in(request, "the request", f))

    def smtp_send_mime(self, request: JsonIn, mime: BytesIn) -> Dict[str, Any]:
        """Sends the host's RFC 5322 bytes with ``"envelope": {"from", "to"}`` or ``"from_headers"``."""
        f = "mailoauth_smtp_send_mime"
        with InBuffer(mime, "the message") as b:
            return self._out_dict(f, json_in(request, "the request", f), b.buf, b.len)

    def smtp_forward(self, request: JsonIn, original: BytesIn) -> Dict[str, Any]:
        """Forwards a polled message's bytes: ``{"account", "to", "mode": "attachment" | "inline" | "redirect"}``."""
        f = "mailoauth_smtp_forward"
        with InBuffer(original, "the original message") as b:
            return self._out_dict(f, json_in(request, "the request", f), b.buf, b.len)

    # -- mailboxes --------------------------------------------------------------------------

    def mailbox_open(self, request: JsonIn) -> Mailbox:
        """Opens ``{"account", "protocol": "imap" | "pop3", "folder", "start": "all" | "new",
        "lock_timeout_ms"}``; ``BUSY`` while another handle holds its poll state."""
        f = "mailoauth_mailbox_open"
        h = c_void_p()
        self._call(f, json_in(request, "the request", f), ctypes.byref(h))
        return self._mailbox_type(self._lib, h, self)
