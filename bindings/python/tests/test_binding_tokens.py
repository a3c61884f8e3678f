"""Tokens and accounts: token_get (str), token_get_bytes (a bytearray the
host zeroes), forced refresh, protocols as text or a list, account_list,
account_remove; the token works at the mail server (IMAP XOAUTH2)."""

from __future__ import annotations

import imaplib
import ssl

import pytest

import mailoauth
from binding_helpers import ALICE, BOB, sign_in
from mailoauth import MailOAuthError


def test_token_get_and_force_refresh(ctx, idp, stack):
    sign_in(ctx, idp, ALICE)
    t1 = ctx.token_get(ALICE, "imap")
    assert isinstance(t1, str) and len(t1) > 20
    assert ctx.token_get(ALICE, ["smtp", "imap", "pop3"]) == t1, "one access token for every protocol"
    before = idp.grants("refresh_token")
    t2 = ctx.token_get(ALICE, "imap", mailoauth.TOKEN_FORCE_REFRESH)
    assert t2 != t1 and idp.grants("refresh_token") == before + 1
    assert ctx.token_get(ALICE, None, True) not in (t1, t2)
    # the token is accepted by the mail server
    tls = ssl.create_default_context(cafile=stack["ca_file"])
    with imaplib.IMAP4_SSL(stack["imap"]["host"], stack["imap"]["tls"], ssl_context=tls) as imap:
        t = ctx.token_get(ALICE, "imap")
        imap.authenticate("XOAUTH2", lambda _: f"user={ALICE}\x01auth=Bearer {t}\x01\x01".encode())
        assert imap.select("INBOX")[0] == "OK"


def test_token_get_bytes_can_be_zeroed(ctx, idp):
    sign_in(ctx, idp, ALICE)
    b = ctx.token_get_bytes(ALICE, "smtp")
    assert isinstance(b, bytearray) and b.decode() == ctx.token_get(ALICE, "smtp")
    mailoauth.zero(b)
    assert b == bytearray(len(b))


def test_no_grant_is_consent_required(ctx):
    with pytest.raises(MailOAuthError) as e:
        ctx.token_get(BOB, "smtp")
    assert e.value.code == mailoauth.CONSENT_REQUIRED and BOB in e.value.message


def test_account_list_and_remove(ctx, idp):
    assert ctx.account_list() == []
    res = sign_in(ctx, idp, ALICE, ("smtp", "imap"))
    assert res["account"] == ALICE
    accounts = ctx.account_list()
    assert [a["account"] for a in accounts] == [ALICE]
    assert sorted(accounts[0]["protocols"]) == ["imap", "smtp"] and accounts[0]["state"] == "ok"
    assert "refresh_token" not in repr(accounts) and ctx.token_get(ALICE, "imap") not in repr(accounts)
    ctx.account_remove(ALICE)
    assert ctx.account_list() == []
    with pytest.raises(MailOAuthError) as e:
        ctx.account_remove(ALICE)
    assert e.value.code == mailoauth.NOT_FOUND
    with pytest.raises(MailOAuthError) as e:
        ctx.token_get(ALICE, "smtp")
    assert e.value.code == mailoauth.CONSENT_REQUIRED


def test_cache_key_protection_and_reset(lib, config, idp, tmp_path):
    key = bytearray(range(32))
    cfg = dict(config, cache={"protection": "key", "path": str(tmp_path / "keyed")})
    with mailoauth.Context(cfg, library=lib) as c:
        c.set_cache_key(key)
        sign_in(c, idp, ALICE, ("imap",))
        token = c.token_get(ALICE, "imap")
    with mailoauth.Context(cfg, library=lib) as c:
        c.set_cache_key(bytes(key))
        assert c.token_get(ALICE, "imap") == token, "the same key reads the grant"
    with mailoauth.Context(cfg, library=lib) as c:
        c.set_cache_key(bytes(32))
        with pytest.raises(MailOAuthError) as e:
            c.token_get(ALICE, "imap")
        assert e.value.code == mailoauth.CACHE_CORRUPT and e.value.hint
        c.cache_reset()
        with pytest.raises(MailOAuthError) as e:
            c.token_get(ALICE, "imap")
        assert e.value.code == mailoauth.CONSENT_REQUIRED
    mailoauth.zero(key)
    assert key == bytearray(32)
