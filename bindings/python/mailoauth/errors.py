"""Exceptions of the binding.

Every failing call raises :class:`MailOAuthError`, built from the calling
thread's ``mailoauth_last_error`` JSON right after the call, on the same
thread (the library's last error is thread-local).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple


class MailOAuthError(Exception):
    """A call returned a result code other than OK (or PENDING/TIMEOUT where allowed).

    Attributes (``None`` when the library did not say):

    - ``code`` / ``name``: the result code (an ``int``, see :class:`mailoauth.Result`) and its name;
    - ``message`` / ``hint``: what happened and what an administrator can do,
      in the context's language (English or German);
    - ``provider_error`` / ``provider_code``: e.g. ``invalid_grant`` / ``AADSTS700082``;
    - ``server_reply``: the mail server's reply (control characters removed, at most 1 KiB);
    - ``correlation_id``, ``retry_after_s``, ``rejected`` (refused recipients);
    - ``error``: the whole last-error record as a ``dict``;
    - ``function``: the C export that failed.

    Messages never hold a token, code, secret or password (the library's guarantee).
    """

    def __init__(self, code: int, name: str, message: str, error: Optional[Dict[str, Any]] = None,
                 function: str = "") -> None:
        self.code = int(code)
        self.name = name
        self.message = message
        self.error: Dict[str, Any] = dict(error or {})
        self.function = function
        text = f"{self.code} {name}: {message}"
        hint = self.error.get("hint")
        if hint:
            text += f" ({hint})"
        super().__init__(f"{function}: {text}" if function else text)

    # The documented keys, spelled out for readers and type checkers.
    @property
    def hint(self) -> Optional[str]:
        return self.error.get("hint")

    @property
    def provider_error(self) -> Optional[str]:
        return self.error.get("provider_error")

    @property
    def provider_code(self) -> Optional[str]:
        return self.error.get("provider_code")

    @property
    def server_reply(self) -> Optional[str]:
        return self.error.get("server_reply")

    @property
    def correlation_id(self) -> Optional[str]:
        return self.error.get("correlation_id")

    @property
    def retry_after_s(self) -> Optional[int]:
        return self.error.get("retry_after_s")

    @property
    def rejected(self) -> Optional[List[str]]:
        return self.error.get("rejected")

    def __getattr__(self, key: str) -> Any:
        # Keys a newer library adds to the record (e.err_something); None when absent.
        if key.startswith("_") or key == "error":
            raise AttributeError(key)
        return self.__dict__.get("error", {}).get(key)

    def __reduce__(self) -> Tuple[Any, ...]:  # picklable across processes (multiprocessing)
        return (type(self), (self.code, self.name, self.message, self.error, self.function))


class AbiMismatchError(MailOAuthError):
    """The loaded library implements an older ABI than this binding needs (ABI_MISMATCH)."""


class LibraryNotFoundError(OSError):
    """libmailoauth could not be found or loaded (see :func:`mailoauth.find_library`)."""


class MissingExport(AttributeError):
    """The loaded library does not export a function this call needs."""
