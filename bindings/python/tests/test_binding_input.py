"""Bad input through the Pythonic surface: None where a value is needed,
wrong types, invalid UTF-8 (as bytes: passed through, refused by the
library), NUL and lone surrogates (refused before the call, since C would
cut the string short), malformed JSON text and dicts json cannot write,
and calls on closed handles. Every one is an exception; nothing crashes."""

from __future__ import annotations

import math

import pytest

import mailoauth
from mailoauth import INVALID_ARGUMENT, INVALID_CONFIG, MailOAuthError


def raises(code: int, fn, *args, source: str = "library") -> MailOAuthError:
    with pytest.raises(MailOAuthError) as e:
        fn(*args)
    assert e.value.code == code, e.value
    assert e.value.message
    assert e.value.error.get("source", "library") == source, e.value.error
    return e.value


@pytest.fixture
def octx(lib, offline_config):
    with mailoauth.Context(offline_config, library=lib) as c:
        yield c


def test_none_where_a_value_is_required(lib, octx):
    e = raises(INVALID_ARGUMENT, octx.token_get, None)
    assert "account" in e.message
    raises(INVALID_ARGUMENT, octx.account_remove, None)
    with pytest.raises(TypeError):
        octx.consent_begin(None)
    with pytest.raises(TypeError):
        mailoauth.Context(None, library=lib)
    with pytest.raises(TypeError):
        octx.smtp_send_mime({"account": "a@b.c"}, "text, not bytes")


def test_wrong_types_are_type_errors(octx):
    for bad in (42, 4.2, ["a@b.c"], object()):
        with pytest.raises(TypeError):
            octx.token_get(bad)
    with pytest.raises(TypeError):
        octx.set_cache_key("a str is not a key")
    with pytest.raises(TypeError):
        octx.set_store(object())
    with pytest.raises(TypeError):
        mailoauth.zero(b"immutable")


def test_invalid_utf8_as_bytes_reaches_the_library_and_is_refused(octx):
    e = raises(INVALID_ARGUMENT, octx.token_get, b"al\xffce@contoso.test")
    assert e.function == "mailoauth_token_get"
    raises(INVALID_ARGUMENT, octx.token_get, "alice@contoso.test", b"im\xc3ap")
    raises(INVALID_ARGUMENT, octx.account_remove, b"\xc0\x80@contoso.test")
    raises(INVALID_ARGUMENT, octx.consent_begin, b'{"account": "\xff"}')
    raises(INVALID_ARGUMENT, octx.smtp_send, b'{"account": "a\xfe@b.c"}')


def test_nul_and_lone_surrogates_are_refused_before_the_call(octx):
    e = raises(INVALID_ARGUMENT, octx.token_get, "alice@contoso.test\0evil", source="binding")
    assert "NUL" in e.message and e.function == "mailoauth_token_get"
    raises(INVALID_ARGUMENT, octx.token_get, b"alice\0@contoso.test", source="binding")
    raises(INVALID_ARGUMENT, octx.token_get, "alice\ud800@contoso.test", source="binding")
    raises(INVALID_ARGUMENT, octx.smtp_send, '{"account": "a@b.c\0"}', source="binding")


def test_line_breaks_and_unknown_enum_text_are_refused_by_the_library(octx):
    raises(INVALID_ARGUMENT, octx.token_get, "alice@contoso.test\r\n")
    raises(INVALID_ARGUMENT, octx.token_get, "alice@contoso.test", "imap4")
    raises(INVALID_ARGUMENT, octx.token_get, "alice@contoso.test", ["smtp", "fax"])
    raises(INVALID_ARGUMENT, octx.token_get, "alice@contoso.test", None, 4)


class Unwritable:
    pass


@pytest.mark.parametrize("bad", [
    {"account": {"a", "set"}},
    {"account": Unwritable()},
    {"timeout_s": math.nan},
    {"timeout_s": math.inf},
    {("tuple", "key"): 1},
])
def test_dicts_json_cannot_write(octx, lib, bad):
    e = raises(INVALID_CONFIG, octx.consent_begin, bad, source="binding")
    assert "JSON" in e.message
    raises(INVALID_CONFIG, octx.smtp_send, bad, source="binding")
    raises(INVALID_CONFIG, octx.mailbox_open, bad, source="binding")
    with pytest.raises(MailOAuthError) as ei:
        mailoauth.Context(dict(bad, client_id="x"), library=lib)
    assert ei.value.code == INVALID_CONFIG


def test_circular_requests(octx):
    loop: dict = {"account": "a@b.c"}
    loop["self"] = loop
    raises(INVALID_CONFIG, octx.consent_begin, loop, source="binding")


@pytest.mark.parametrize("text", ['{"account": ', "[1, 2", "", "null", '{"account": "a@b.c", "account": "x@y.z"}',
                                  '{"account": "a@b.c", "flow": "browser", "unknown_key": 1}'])
def test_malformed_json_text_is_invalid_config(octx, text):
    e = raises(INVALID_CONFIG, octx.consent_begin, text)
    assert e.function == "mailoauth_consent_begin"


def test_unknown_configuration_key_is_named(lib, offline_config):
    with pytest.raises(MailOAuthError) as e:
        mailoauth.Context(dict(offline_config, tennant="typo"), library=lib)
    assert e.value.code == INVALID_CONFIG and "tennant" in e.value.message


def test_bad_numbers(octx):
    raises(INVALID_ARGUMENT, octx.set_cache_key, b"too short")
    with pytest.raises(TypeError):
        octx.token_get("a@b.c", None, "1")


def test_calls_on_a_closed_handle(lib, offline_config):
    c = mailoauth.Context(offline_config, library=lib)
    c.close()
    c.close()  # twice is a no-op
    assert c.closed and c.handle is None
    e = raises(INVALID_ARGUMENT, c.describe, source="binding")
    assert "closed" in e.message and e.function == "mailoauth_context_describe"
    raises(INVALID_ARGUMENT, c.token_get, "a@b.c", source="binding")
    raises(INVALID_ARGUMENT, c.consent_begin, {"account": "a@b.c"}, source="binding")
