"""mailoauth for Python: OAuth2 for SMTP, IMAP and POP3 through libmailoauth's C ABI (ctypes).

A script host::

    import mailoauth

    with mailoauth.Context({"client_id": "…", "tenant": "contoso.com"}) as ctx:
        try:
            token = ctx.token_get("user@contoso.com", "smtp")
        except mailoauth.MailOAuthError as e:
            if e.code != mailoauth.CONSENT_REQUIRED:
                raise
            ctx.consent({"account": "user@contoso.com", "flow": "browser"}, timeout_ms=300_000)
        ctx.smtp_send({"account": "user@contoso.com",
                       "message": {"to": ["bob@contoso.com"], "subject": "Hi", "text": "…"}})

The library is found through ``$MAILOAUTH_LIBRARY``, next to this package,
or the system loader (:func:`find_library`); loading checks its ABI version.
"""

from __future__ import annotations

from ._convert import zero
from ._loader import find_library
from .codes import *  # noqa: F401,F403 - the result codes as constants
from .codes import ABI_VERSION, TOKEN_FORCE_REFRESH, LogLevel, Result
from .context import Context
from .errors import AbiMismatchError, LibraryNotFoundError, MailOAuthError, MissingExport
from .library import Library, python_logging
from .mailbox import Mailbox
from .operation import Operation
from .store import HostStore, LockingHostStore, MemoryStore

__version__ = "0.1.0"


def load_library(path: str | None = None) -> Library:
    """The process's shared :class:`Library` (loaded on first use)."""
    return Library.load(path)


def version() -> str:
    """The loaded library's version."""
    return Library.load().version()


def set_logger(max_level: int, fn) -> None:  # type: ignore[no-untyped-def]
    """Installs the process-wide logger on the shared library (see :meth:`Library.set_logger`)."""
    Library.load().set_logger(max_level, fn)


__all__ = [
    "ABI_VERSION", "TOKEN_FORCE_REFRESH", "LogLevel", "Result",
    "Library", "Context", "Operation", "Mailbox",
    "HostStore", "LockingHostStore", "MemoryStore",
    "MailOAuthError", "AbiMismatchError", "LibraryNotFoundError", "MissingExport",
    "find_library", "load_library", "python_logging", "set_logger", "version", "zero",
] + [r.name for r in Result]
