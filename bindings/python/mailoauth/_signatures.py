"""The ctypes declarations of every export (include/mailoauth.h).

Handles are ``c_void_p`` on this side (opaque in C), and so is every
``char **`` / ``uint8_t **`` output: a ``c_char_p`` result would be copied
into a Python ``bytes`` by ctypes and the library's pointer lost, so it could
never be handed back to ``mailoauth_string_free``. Input strings are
``c_char_p`` (NUL-terminated UTF-8), byte buffers ``c_void_p`` followed by
their ``c_int64`` length. tests/test_signatures.py checks this table against
the header.
"""

from __future__ import annotations

from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int32, c_int64, c_uint8, c_uint32, c_void_p
from typing import Any, Dict, List, Tuple

# Opaque handle types (mailoauth_context *, mailoauth_op *, mailoauth_mailbox *, mailoauth_blob *).
ctx_p = c_void_p
op_p = c_void_p
mb_p = c_void_p
blob_p = c_void_p

#: typedef void (*mailoauth_log_fn)(void *user_data, int32_t level, const char *message);
LOG_FN = CFUNCTYPE(None, c_void_p, c_int32, c_char_p)
#: typedef int32_t (*mailoauth_store_load_fn)(void *user_data, const char *key, mailoauth_blob *sink);
STORE_LOAD_FN = CFUNCTYPE(c_int32, c_void_p, c_char_p, c_void_p)
#: typedef int32_t (*mailoauth_store_save_fn)(void *, const char *key, const uint8_t *data, int64_t len);
STORE_SAVE_FN = CFUNCTYPE(c_int32, c_void_p, c_char_p, POINTER(c_uint8), c_int64)
#: typedef int32_t (*mailoauth_store_lock_fn)(void *, const char *key, int32_t lock, int32_t timeout_ms);
STORE_LOCK_FN = CFUNCTYPE(c_int32, c_void_p, c_char_p, c_int32, c_int32)

_out = POINTER(c_void_p)

#: name -> (restype, argtypes)
EXPORTS: Dict[str, Tuple[Any, List[Any]]] = {
    # library
    "mailoauth_version": (c_char_p, []),
    "mailoauth_abi_version": (c_uint32, []),
    "mailoauth_result_str": (c_char_p, [c_int32]),
    "mailoauth_last_error": (c_int32, [_out]),
    "mailoauth_last_error_message": (c_int32, [c_void_p, c_int32]),
    "mailoauth_string_free": (None, [c_void_p]),
    "mailoauth_secret_free": (None, [c_void_p]),
    "mailoauth_bytes_free": (None, [c_void_p, c_int64]),
    "mailoauth_set_logger": (c_int32, [c_int32, LOG_FN, c_void_p]),
    # context
    "mailoauth_context_new": (c_int32, [c_char_p, c_uint32, POINTER(ctx_p)]),
    "mailoauth_context_describe": (c_int32, [ctx_p, _out]),
    "mailoauth_context_cancel": (c_int32, [ctx_p]),
    "mailoauth_context_free": (None, [ctx_p]),
    "mailoauth_context_set_cache_key": (c_int32, [ctx_p, c_void_p, c_int64]),
    "mailoauth_cache_reset": (c_int32, [ctx_p]),
    # host store
    "mailoauth_context_set_store": (c_int32, [ctx_p, STORE_LOAD_FN, STORE_SAVE_FN, STORE_LOCK_FN, c_void_p]),
    "mailoauth_blob_set": (c_int32, [blob_p, c_void_p, c_int64]),
    # tokens and accounts
    "mailoauth_token_get": (c_int32, [ctx_p, c_char_p, c_char_p, c_int32, _out]),
    "mailoauth_account_list": (c_int32, [ctx_p, _out]),
    "mailoauth_account_remove": (c_int32, [ctx_p, c_char_p]),
    "mailoauth_account_test_begin": (c_int32, [ctx_p, c_char_p, POINTER(op_p)]),
    # consent and operations
    "mailoauth_consent_begin": (c_int32, [ctx_p, c_char_p, POINTER(op_p)]),
    "mailoauth_op_wait": (c_int32, [op_p, c_int32]),
    "mailoauth_op_info": (c_int32, [op_p, _out]),
    "mailoauth_op_result": (c_int32, [op_p, _out]),
    "mailoauth_op_cancel": (c_int32, [op_p]),
    "mailoauth_op_free": (None, [op_p]),
    # SMTP
    "mailoauth_smtp_send": (c_int32, [ctx_p, c_char_p, _out]),
    "mailoauth_smtp_send_mime": (c_int32, [ctx_p, c_char_p, c_void_p, c_int64, _out]),
    "mailoauth_smtp_forward": (c_int32, [ctx_p, c_char_p, c_void_p, c_int64, _out]),
    # mailboxes
    "mailoauth_mailbox_open": (c_int32, [ctx_p, c_char_p, POINTER(mb_p)]),
    "mailoauth_mailbox_poll": (c_int32, [mb_p, c_int32, _out]),
    "mailoauth_mailbox_fetch": (c_int32, [mb_p, c_char_p, _out, POINTER(c_int64)]),
    "mailoauth_mailbox_fetch_to_file": (c_int32, [mb_p, c_char_p, c_char_p]),
    "mailoauth_mailbox_ack": (c_int32, [mb_p, c_char_p, c_char_p]),
    "mailoauth_mailbox_wait": (c_int32, [mb_p, c_int32]),
    "mailoauth_mailbox_list_folders": (c_int32, [mb_p, _out]),
    "mailoauth_mailbox_cancel": (c_int32, [mb_p]),
    "mailoauth_mailbox_free": (None, [mb_p]),
}

#: Exports a library of ABI_VERSION 1 must have for this binding to load
#: (the rest are bound when present; Library.has() tells).
REQUIRED = ("mailoauth_abi_version", "mailoauth_version", "mailoauth_result_str",
            "mailoauth_last_error", "mailoauth_string_free", "mailoauth_secret_free",
            "mailoauth_bytes_free", "mailoauth_context_new", "mailoauth_context_free")
