"""NULL and bad-input paths of the token, account, store and consent exports,
called through ctypes exactly as a careless script host would: every one
answers with the documented code, records it as the thread's last error and
leaves output parameters untouched."""

from __future__ import annotations

import ctypes
from ctypes import byref, c_void_p

import pytest

import mailoauth_ctypes as mo
from stackutil import ALICE, need

SENTINEL = 0x5EED


def out_ptr():
    return c_void_p(SENTINEL)


def expect(lib, rc, code):
    """`rc` is `code` and the thread's last error says so."""
    assert rc == code, f"returned {rc} ({lib.result_str(rc)}), expected {code} ({lib.result_str(code)})"
    err = lib.last_error()
    assert err["code"] == code and err["name"] == lib.result_str(code), err
    assert err.get("message"), err
    return err


@pytest.fixture
def raw(lib):
    return lib.raw


# ---- tokens and accounts -----------------------------------------------------------


def test_token_get_null_and_bad_arguments(lib, raw, ctx):
    h = ctx.handle
    out = out_ptr()
    expect(lib, raw.mailoauth_token_get(None, b"a@b.c", b"imap", 0, byref(out)), mo.INVALID_ARGUMENT)
    err = expect(lib, raw.mailoauth_token_get(h, None, b"imap", 0, byref(out)), mo.INVALID_ARGUMENT)
    assert "account" in err["message"]
    expect(lib, raw.mailoauth_token_get(h, b"", b"imap", 0, byref(out)), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_token_get(h, b"a@b.c", b"imap", 0, None), mo.INVALID_ARGUMENT)
    # invalid UTF-8 is refused, never repaired
    expect(lib, raw.mailoauth_token_get(h, b"al\xffce@contoso.test", b"imap", 0, byref(out)), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_token_get(h, b"alice@contoso.test", b"im\xc3ap", 0, byref(out)), mo.INVALID_ARGUMENT)
    # line breaks in the account
    for bad in (b"alice@contoso.test\r\n", b"alice\n@contoso.test", b"alice\r@contoso.test"):
        expect(lib, raw.mailoauth_token_get(h, bad, b"imap", 0, byref(out)), mo.INVALID_ARGUMENT)
    # unknown protocol names
    for bad in (b"imap4", b"smtp fax", b"IMAP!", b"http"):
        expect(lib, raw.mailoauth_token_get(h, b"a@b.c", bad, 0, byref(out)), mo.INVALID_ARGUMENT)
    # unknown flag bits
    for flags in (2, 4, 3, 0x100, -1, -(2**31)):
        err = expect(lib, raw.mailoauth_token_get(h, b"a@b.c", b"imap", flags, byref(out)), mo.INVALID_ARGUMENT)
    assert "flag" in err["message"].lower()
    assert out.value == SENTINEL, "an output was written on failure"


def test_token_get_without_grant_is_consent_required(lib, raw, ctx):
    out = out_ptr()
    expect(lib, raw.mailoauth_token_get(ctx.handle, ALICE.encode(), None, 0, byref(out)), mo.CONSENT_REQUIRED)
    expect(lib, raw.mailoauth_token_get(ctx.handle, ALICE.encode(), b"smtp", 1, byref(out)), mo.CONSENT_REQUIRED)
    assert out.value == SENTINEL


def test_account_list_and_remove_bad_arguments(lib, raw, ctx):
    out = out_ptr()
    expect(lib, raw.mailoauth_account_list(None, byref(out)), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_account_list(ctx.handle, None), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_account_remove(None, b"a@b.c"), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_account_remove(ctx.handle, None), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_account_remove(ctx.handle, b"\xfe\xff"), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_account_remove(ctx.handle, b"a@b.c\n"), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_account_remove(ctx.handle, b"nobody@contoso.test"), mo.NOT_FOUND)
    assert out.value == SENTINEL
    assert ctx.account_list() == []


def test_a_freed_context_is_refused(lib, raw, config):
    c = lib.context(config)
    h = c.handle
    c.free()
    out = out_ptr()
    expect(lib, raw.mailoauth_token_get(h, b"a@b.c", b"imap", 0, byref(out)), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_account_list(h, byref(out)), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_account_remove(h, b"a@b.c"), mo.INVALID_ARGUMENT)
    raw.mailoauth_context_free(h)  # twice: a no-op
    assert out.value == SENTINEL


def test_cache_key_bad_arguments(lib, raw, ctx):
    key = ctypes.create_string_buffer(32)
    expect(lib, raw.mailoauth_context_set_cache_key(None, key, 32), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_context_set_cache_key(ctx.handle, None, 32), mo.INVALID_ARGUMENT)
    for n in (0, 16, 31, 33, 64, -1):
        expect(lib, raw.mailoauth_context_set_cache_key(ctx.handle, key, n), mo.INVALID_ARGUMENT)
    assert raw.mailoauth_context_set_cache_key(ctx.handle, key, 32) == mo.OK


def test_last_error_after_success_and_failure(lib, raw, ctx):
    with pytest.raises(mo.MailOAuthError) as e:
        ctx.token_get("x@y.z", "pop3", 8)
    assert e.value.code == mo.INVALID_ARGUMENT and e.value.name == "INVALID_ARGUMENT"
    need_size = raw.mailoauth_last_error_message(None, 0)
    assert need_size == len(lib.last_error()["message"].encode()) + 1
    assert lib.last_error_message() == lib.last_error()["message"]


# ---- host store ------------------------------------------------------------------


def test_set_store_bad_arguments(lib, raw, ctx):
    load = mo.STORE_LOAD_FN(lambda u, k, s: 0)
    save = mo.STORE_SAVE_FN(lambda u, k, d, n: 0)
    expect(lib, raw.mailoauth_context_set_store(None, load, save, mo.STORE_LOCK_FN(), None), mo.INVALID_ARGUMENT)
    # load without save (and save without load)
    expect(lib, raw.mailoauth_context_set_store(ctx.handle, load, mo.STORE_SAVE_FN(), mo.STORE_LOCK_FN(), None),
           mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_context_set_store(ctx.handle, mo.STORE_LOAD_FN(), save, mo.STORE_LOCK_FN(), None),
           mo.INVALID_ARGUMENT)


def test_blob_set_outside_a_load_callback(lib, raw):
    buf = ctypes.create_string_buffer(b"xyz", 3)
    fake = ctypes.create_string_buffer(64)  # looks like memory, is no sink
    expect(lib, raw.mailoauth_blob_set(None, buf, 3), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_blob_set(ctypes.addressof(fake), buf, 3), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_blob_set(0x1000, buf, 3), mo.INVALID_ARGUMENT)


def test_blob_set_with_a_foreign_sink_inside_a_load_callback(lib, raw, stack, tmp_path):
    """Inside a load callback only the sink passed to it is accepted; a
    sink from an earlier callback, a made-up pointer or a negative length
    are INVALID_ARGUMENT, and the right sink still works afterwards."""
    from stackutil import make_config

    cfg = make_config(stack, tmp_path / "unused")
    cfg["cache"] = {"protection": "none", "path": None}
    seen = {}
    results = []
    store = {}

    def load(key, sink):
        fake = ctypes.create_string_buffer(64)
        data = store.get(key, b"")
        buf = ctypes.create_string_buffer(b"junk", 4)
        r = [
            raw.mailoauth_blob_set(ctypes.addressof(fake), buf, 4),
            raw.mailoauth_blob_set(sink + 8, buf, 4),
            raw.mailoauth_blob_set(sink, buf, -1),
        ]
        if "old" in seen:
            r.append(raw.mailoauth_blob_set(seen["old"], buf, 4))
        seen["old"] = sink
        results.append(r)
        if data:
            lib.blob_set(sink, data)
        return 0

    def save(key, data):
        store[key] = data
        return 0

    with lib.context(cfg) as c:
        c.set_store(load, save)
        with pytest.raises(mo.MailOAuthError) as e:
            c.token_get(ALICE, "imap")
        assert e.value.code == mo.CONSENT_REQUIRED, e.value
        assert c.account_list() == []
        with pytest.raises(mo.MailOAuthError) as e:
            c.token_get(ALICE, "imap")
    assert results, "the load callback never ran"
    for r in results:
        assert all(x == mo.INVALID_ARGUMENT for x in r), results


# ---- consent and operations ------------------------------------------------------


@pytest.fixture
def consent(lib):
    need(lib, "mailoauth_consent_begin", "mailoauth_op_wait", "mailoauth_op_info", "mailoauth_op_result",
         "mailoauth_op_cancel", "mailoauth_op_free")


def test_consent_begin_bad_arguments(lib, raw, ctx, consent):
    out = out_ptr()
    good = b'{"account":"alice@contoso.test","flow":"browser"}'
    expect(lib, raw.mailoauth_consent_begin(None, good, byref(out)), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_consent_begin(ctx.handle, None, byref(out)), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_consent_begin(ctx.handle, good, None), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_consent_begin(ctx.handle, b'{"account":"al\xffce@contoso.test"}', byref(out)),
           mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_consent_begin(ctx.handle, b'{"account":"alice@contoso.test\\r\\nX"}', byref(out)),
           mo.INVALID_ARGUMENT)
    for bad in (
        b"",
        b"not json",
        b"[1,2]",
        b'{"account": "alice@contoso.test",}',
        b'{"acount": "alice@contoso.test"}',  # typo: unknown key
        b'{"account": "alice@contoso.test", "account": "bob@contoso.test"}',  # duplicate key
        b'{"protocols": "imap"}',
        b'{"timeout_s": 0}',
        b'{"timeout_s": "300"}',
        b'{"accept_other_account": "yes"}',
        b'{"flow": "app", "account": "service@contoso.test"}',  # app without client_secret
    ):
        err = expect(lib, raw.mailoauth_consent_begin(ctx.handle, bad, byref(out)), mo.INVALID_CONFIG)
    assert "client_secret" in err["message"]
    assert out.value == SENTINEL


def test_op_calls_on_null_or_freed_ops(lib, raw, ctx, consent):
    out = out_ptr()
    expect(lib, raw.mailoauth_op_wait(None, 0), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_op_info(None, byref(out)), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_op_result(None, byref(out)), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_op_cancel(None), mo.INVALID_ARGUMENT)
    raw.mailoauth_op_free(None)
    op = ctx.consent_begin({"account": ALICE, "flow": "browser"})
    expect(lib, raw.mailoauth_op_info(op.handle, None), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_op_result(op.handle, None), mo.INVALID_ARGUMENT)
    h = op.handle
    op.free()
    expect(lib, raw.mailoauth_op_wait(h, 0), mo.INVALID_ARGUMENT)
    expect(lib, raw.mailoauth_op_info(h, byref(out)), mo.INVALID_ARGUMENT)
    raw.mailoauth_op_free(h)  # twice: a no-op
    assert out.value == SENTINEL


def test_op_result_before_done_then_cancel(lib, raw, ctx, consent):
    with ctx.consent_begin({"account": ALICE, "flow": "browser", "protocols": ["imap"]}) as op:
        info = op.info()
        assert info["state"] in ("starting", "waiting_for_user"), info
        assert info["authorize_url"].startswith("http://127.0.0.1")
        out = out_ptr()
        expect(lib, raw.mailoauth_op_result(op.handle, byref(out)), mo.INVALID_STATE)
        assert out.value == SENTINEL
        assert op.wait(0) == mo.PENDING
        assert op.wait(20) == mo.PENDING
        op.cancel()
        with pytest.raises(mo.MailOAuthError) as e:
            op.wait(5000)
        assert e.value.code == mo.CANCELLED
        assert op.info()["state"] == "cancelled"
        op.cancel()  # idempotent
        with pytest.raises(mo.MailOAuthError) as e:
            op.result()
        assert e.value.code == mo.CANCELLED
    assert ctx.account_list() == []


def test_pending_sets_no_last_error(lib, ctx, consent):
    """ABI: "PENDING sets nothing": a poll that finds the consent still
    running leaves the thread's last error as it was."""
    with ctx.consent_begin({"account": ALICE, "flow": "browser"}) as op:
        with pytest.raises(mo.MailOAuthError):
            ctx.token_get(ALICE, "imap", 64)
        before = lib.last_error()
        assert before["code"] == mo.INVALID_ARGUMENT
        assert op.wait(0) == mo.PENDING
        assert lib.last_error() == before


def test_store_callback_failures_are_cache_io(lib, stack, tmp_path):
    """A load or save callback that answers non-zero: CACHE_IO, with the
    callback's value in the last error."""
    from stackutil import make_config

    cfg = make_config(stack, tmp_path / "unused")
    with lib.context(cfg) as c:
        c.set_store(lambda key, sink: 7, lambda key, data: 0)
        with pytest.raises(mo.MailOAuthError) as e:
            c.token_get(ALICE, "imap")
        assert e.value.code == mo.CACHE_IO, e.value
        assert "7" in e.value.message
        with pytest.raises(mo.MailOAuthError) as e:
            c.account_list()
        assert e.value.code == mo.CACHE_IO
        # a callback that raises in Python becomes -1 through the binding
        c.set_store(lambda key, sink: 1 // 0, lambda key, data: 0)
        with pytest.raises(mo.MailOAuthError) as e:
            c.token_get(ALICE, "imap")
        assert e.value.code == mo.CACHE_IO and "-1" in e.value.message
