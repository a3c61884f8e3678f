"""Result codes, flags and log levels of the C ABI (ABI.md "Result codes").

The numbers are the contract: they are never renumbered. Each code is also
a module-level constant (``mailoauth.codes.CONSENT_REQUIRED``) so that a
script can compare ``err.code == CONSENT_REQUIRED``; :class:`Result` is the
same set as an ``IntEnum`` for readable output.
"""

from __future__ import annotations

from enum import IntEnum

#: The ABI this binding was written against (MAILOAUTH_ABI_VERSION of include/mailoauth.h).
ABI_VERSION = 1


class Result(IntEnum):
    """Every result code of the C ABI; equal to the plain integers."""

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


class LogLevel(IntEnum):
    """Levels of the logger callback (1 error .. 5 trace)."""

    ERROR = 1
    WARNING = 2
    INFO = 3
    DEBUG = 4
    TRACE = 5


OK = Result.OK
PENDING = Result.PENDING
INVALID_ARGUMENT = Result.INVALID_ARGUMENT
INVALID_CONFIG = Result.INVALID_CONFIG
ABI_MISMATCH = Result.ABI_MISMATCH
INVALID_STATE = Result.INVALID_STATE
BUSY = Result.BUSY
CONSENT_REQUIRED = Result.CONSENT_REQUIRED
CANCELLED = Result.CANCELLED
TIMEOUT = Result.TIMEOUT
DECLINED = Result.DECLINED
PROVIDER_ERROR = Result.PROVIDER_ERROR
THROTTLED = Result.THROTTLED
ACCOUNT_MISMATCH = Result.ACCOUNT_MISMATCH
NETWORK = Result.NETWORK
TLS = Result.TLS
PROTOCOL = Result.PROTOCOL
AUTH_REJECTED = Result.AUTH_REJECTED
MAILBOX_ACCESS_DENIED = Result.MAILBOX_ACCESS_DENIED
SEND_REJECTED = Result.SEND_REJECTED
NOT_FOUND = Result.NOT_FOUND
TOO_LARGE = Result.TOO_LARGE
UNTRUSTED_HOST = Result.UNTRUSTED_HOST
CACHE_IO = Result.CACHE_IO
CACHE_CORRUPT = Result.CACHE_CORRUPT
CACHE_VERSION = Result.CACHE_VERSION
INTERNAL = Result.INTERNAL

#: Flag for :meth:`mailoauth.Context.token_get`: skip the cached access token and refresh.
TOKEN_FORCE_REFRESH = 1

LOG_ERROR = LogLevel.ERROR
LOG_WARNING = LogLevel.WARNING
LOG_INFO = LogLevel.INFO
LOG_DEBUG = LogLevel.DEBUG
LOG_TRACE = LogLevel.TRACE
