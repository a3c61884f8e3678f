"""The binding's ctypes declarations against include/mailoauth.h: every
function the header declares is bound with argtypes/restype that match its C
types (an output string pointer as c_void_p so it can be freed, never
c_char_p), every callback type matches its typedef, and the result codes,
flags and ABI version are the header's."""

from __future__ import annotations

import re
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_uint8, c_uint32, c_void_p
from pathlib import Path

import pytest

import mailoauth
from mailoauth import _signatures as sig

HEADER = Path(__file__).resolve().parents[3] / "include" / "mailoauth.h"

# Exports the binding may declare ahead of the header (none at the moment).
AHEAD_OF_HEADER: set = set()

CALLBACKS = {
    "mailoauth_log_fn": sig.LOG_FN,
    "mailoauth_store_load_fn": sig.STORE_LOAD_FN,
    "mailoauth_store_save_fn": sig.STORE_SAVE_FN,
    "mailoauth_store_lock_fn": sig.STORE_LOCK_FN,
}


def _text() -> str:
    t = HEADER.read_text()
    t = re.sub(r"/\*.*?\*/", " ", t, flags=re.S)
    return re.sub(r"//[^\n]*", " ", t)


def _type_of(param: str) -> str:
    """`const uint8_t *data` -> `const uint8_t *` (the name dropped, spacing normalised)."""
    p = " ".join(param.replace("*", " * ").split())
    if p == "void":
        return "void"
    words = p.split(" ")
    assert re.fullmatch(r"\w+", words[-1]), param
    return " ".join(words[:-1]).replace("* *", "**")


def header_functions() -> dict:
    out = {}
    for m in re.finditer(r"(?m)^([A-Za-z_][\w ]*?\**)\s*(mailoauth_\w+)\s*\(([^)]*)\)\s*;", _text()):
        ret = " ".join(m.group(1).replace("*", " * ").split()).replace("* *", "**")
        params = [q.strip() for q in m.group(3).split(",") if q.strip()]
        args = [] if params == ["void"] else [_type_of(q) for q in params]
        out[m.group(2)] = (ret, args)
    return out


def header_callbacks() -> dict:
    out = {}
    for m in re.finditer(r"typedef\s+([\w ]+?\**)\s*\(\*\s*(\w+)\)\s*\(([^)]*)\)\s*;", _text()):
        out[m.group(2)] = (" ".join(m.group(1).split()), [_type_of(q) for q in m.group(3).split(",")])
    return out


def allowed(ctype: str, position: str):
    """The ctypes declarations that correctly stand for a C type."""
    handle = re.fullmatch(r"mailoauth_(context|op|mailbox|blob) \*", ctype)
    handle_out = re.fullmatch(r"mailoauth_(context|op|mailbox) \*\*", ctype)
    table = {
        "void": [None],
        "int32_t": [c_int32],
        "uint32_t": [c_uint32],
        "int64_t": [c_int64],
        "void *": [c_void_p],
        "const char *": [c_char_p],
        # a library-owned or caller-filled char buffer: an address, not a Python bytes copy
        "char *": [c_void_p] if position == "param" else [],
        "char **": [POINTER(c_void_p)],
        "uint8_t **": [POINTER(c_void_p)],
        "const uint8_t *": [c_void_p, POINTER(c_uint8)],
        "uint8_t *": [c_void_p],
        "int64_t *": [POINTER(c_int64)],
    }
    if ctype in CALLBACKS:
        return [CALLBACKS[ctype]]
    if handle:
        return [c_void_p]
    if handle_out:
        return [POINTER(c_void_p)]
    if position == "return" and ctype == "const char *":
        return [c_char_p]  # static strings only (version, result_str): never freed
    assert ctype in table, f"no rule for the C type {ctype!r}"
    return table[ctype]


def test_the_header_parses():
    fns = header_functions()
    assert len(fns) >= 39, sorted(fns)
    assert "mailoauth_account_test_begin" in fns
    assert fns["mailoauth_mailbox_fetch"] == (
        "int32_t", ["mailoauth_mailbox *", "const char *", "uint8_t **", "int64_t *"])
    assert fns["mailoauth_version"] == ("const char *", [])
    assert set(header_callbacks()) == set(CALLBACKS)


def test_every_header_function_is_bound():
    missing = set(header_functions()) - set(sig.EXPORTS)
    assert not missing, f"declared in mailoauth.h, not bound by the binding: {sorted(missing)}"


def test_the_binding_declares_nothing_the_header_lacks():
    extra = set(sig.EXPORTS) - set(header_functions())
    assert extra <= AHEAD_OF_HEADER, f"bound, but not in mailoauth.h: {sorted(extra - AHEAD_OF_HEADER)}"


@pytest.mark.parametrize("name", sorted(sig.EXPORTS))
def test_argtypes_and_restype_match_the_header(name):
    fns = header_functions()
    if name not in fns:
        assert name in AHEAD_OF_HEADER
        pytest.skip(f"{name} is not in include/mailoauth.h yet")
    ret, args = fns[name]
    restype, argtypes = sig.EXPORTS[name]
    assert restype in allowed(ret, "return"), f"{name}: restype {restype} for C {ret!r}"
    assert len(argtypes) == len(args), f"{name}: {len(argtypes)} argtypes, the header has {len(args)}"
    for i, (declared, ctype) in enumerate(zip(argtypes, args)):
        assert declared in allowed(ctype, "param"), f"{name} argument {i}: {declared} for C {ctype!r}"


def test_the_loaded_library_gets_these_declarations(lib):
    for name, (restype, argtypes) in sig.EXPORTS.items():
        if not lib.has(name):
            assert name in AHEAD_OF_HEADER, f"the library lacks {name}"
            continue
        fn = getattr(lib.raw, name)
        assert fn.restype is restype and list(fn.argtypes) == list(argtypes), name
    for name in header_functions():
        assert lib.has(name), f"the library does not export {name} from the header"


@pytest.mark.parametrize("name", sorted(CALLBACKS))
def test_callback_types_match_the_typedefs(name):
    ret, args = header_callbacks()[name]
    cb = CALLBACKS[name]
    assert cb._restype_ in allowed(ret, "return"), name
    assert len(cb._argtypes_) == len(args), name
    for declared, ctype in zip(cb._argtypes_, args):
        ok = allowed(ctype, "param")
        if ctype == "mailoauth_blob *":
            ok = [c_void_p]
        if ctype == "const uint8_t *":
            ok = [POINTER(c_uint8)]  # read with string_at(data, len)
        assert declared in ok, f"{name}: {declared} for C {ctype!r}"


def test_codes_flags_and_abi_version_are_the_headers():
    defines = {m.group(1): int(m.group(2))
               for m in re.finditer(r"#define MAILOAUTH_(\w+) (\d+)\b", HEADER.read_text())}
    assert defines.pop("ABI_VERSION") == mailoauth.ABI_VERSION
    assert defines.pop("TOKEN_FORCE_REFRESH") == mailoauth.TOKEN_FORCE_REFRESH
    for k in ("VERSION_MAJOR", "VERSION_MINOR", "VERSION_PATCH"):
        defines.pop(k)
    assert defines == {r.name: int(r) for r in mailoauth.Result}
