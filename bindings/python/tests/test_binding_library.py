"""Loading: where the library is found ($MAILOAUTH_LIBRARY, next to the
package, the system loader), what a wrong library gives, the ABI check;
the library-level functions (version, result names, last error)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mailoauth
from mailoauth import _loader

PKG = Path(mailoauth.__file__).resolve().parent


def run_python(code: str, env: dict, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60)


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MAILOAUTH_LIBRARY", "LD_LIBRARY_PATH")}
    env.update(extra)
    return env


PROBE = "import mailoauth, json; l = mailoauth.Library.load(); print(json.dumps([l.path, l.version()]))"


def test_found_through_the_environment_variable(lib):
    env = clean_env(MAILOAUTH_LIBRARY=lib.path, PYTHONPATH=str(PKG.parent))
    p = run_python(PROBE, env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [lib.path, lib.version()]


def test_found_next_to_the_package(lib, tmp_path):
    copy = tmp_path / "site" / "mailoauth"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(lib.path, copy / "libmailoauth.so")
    p = run_python(PROBE, clean_env(PYTHONPATH=str(copy.parent)))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0] == str(copy / "libmailoauth.so")


def test_found_through_the_system_loader(lib, tmp_path):
    d = tmp_path / "lib"
    d.mkdir()
    shutil.copy(lib.path, d / "libmailoauth.so")
    p = run_python(PROBE, clean_env(PYTHONPATH=str(PKG.parent), LD_LIBRARY_PATH=str(d)))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0] in ("libmailoauth.so", str(d / "libmailoauth.so"))


def test_not_found_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILOAUTH_LIBRARY", str(tmp_path / "nowhere.so"))
    assert mailoauth.find_library() == str(tmp_path / "nowhere.so")
    with pytest.raises(mailoauth.LibraryNotFoundError) as e:
        mailoauth.Library()
    assert "nowhere.so" in str(e.value) and "MAILOAUTH_LIBRARY" in str(e.value)


def test_another_library_is_refused():
    import ctypes.util

    libc = ctypes.util.find_library("c")
    assert libc
    with pytest.raises(mailoauth.LibraryNotFoundError) as e:
        mailoauth.Library(libc)
    assert "not libmailoauth" in str(e.value)


def test_the_abi_check_at_load(lib):
    with pytest.raises(mailoauth.AbiMismatchError) as e:
        mailoauth.Library(lib.path, abi_version=lib.abi_version() + 1)
    err = e.value
    assert err.code == mailoauth.ABI_MISMATCH and err.name == "ABI_MISMATCH"
    assert f"implements C ABI {lib.abi_version()}" in err.message and err.hint
    assert isinstance(err, mailoauth.MailOAuthError)
    # the same library for the ABI it has loads
    assert mailoauth.Library(lib.path, abi_version=lib.abi_version()).version() == lib.version()


def test_a_host_newer_than_the_library_gets_abi_mismatch(lib, offline_config):
    with pytest.raises(mailoauth.MailOAuthError) as e:
        mailoauth.Context(offline_config, library=lib, abi_version=lib.abi_version() + 1)
    assert e.value.code == mailoauth.ABI_MISMATCH and e.value.function == "mailoauth_context_new"


def test_version_result_names_and_last_error(lib):
    assert lib.version() == mailoauth.__version__
    assert lib.abi_version() >= mailoauth.ABI_VERSION
    for r in mailoauth.Result:
        assert lib.result_str(r) == r.name
    assert lib.result_str(12345)  # a generic text, never NULL
    with pytest.raises(mailoauth.MailOAuthError):
        mailoauth.Context({"client_id": ""}, library=lib)
    err = lib.last_error()
    assert err["code"] == mailoauth.INVALID_CONFIG and err["message"]
    assert lib.last_error_message() == err["message"]
    lib.version()  # does not touch the last error
    assert lib.last_error()["code"] == mailoauth.INVALID_CONFIG


def test_library_load_is_shared(lib):
    assert mailoauth.Library.load() is mailoauth.Library.load()
    assert mailoauth.load_library() is mailoauth.Library.load()


def test_missing_exports_are_reported(lib):
    assert not lib.has("mailoauth_does_not_exist")
    with pytest.raises(mailoauth.MissingExport):
        lib.fn("mailoauth_does_not_exist")


def test_system_loader_name_is_the_platform_file(monkeypatch, tmp_path):
    monkeypatch.delenv("MAILOAUTH_LIBRARY", raising=False)
    monkeypatch.setattr(_loader, "__file__", str(tmp_path / "_loader.py"))  # nothing beside it
    monkeypatch.setattr(_loader.ctypes.util, "find_library", lambda name: None)
    assert _loader.find_library() == "libmailoauth.so"


def test_module_level_helpers(lib):
    assert mailoauth.version() == lib.version()
    got = []
    mailoauth.set_logger(mailoauth.LOG_TRACE, lambda level, msg: got.append(msg))
    try:
        # an unknown key with ignore_unknown_keys is logged as a warning
        mailoauth.Context({"client_id": "00000000-0000-0000-0000-000000000000", "unknown_key_for_the_log": 1,
                           "ignore_unknown_keys": True},
                          library=lib).close()
    finally:
        mailoauth.set_logger(mailoauth.LOG_ERROR, None)
    assert any("unknown_key_for_the_log" in m for m in got), got
    with pytest.raises(TypeError):
        mailoauth.set_logger(mailoauth.LOG_INFO, "not callable")
    with pytest.raises(TypeError):
        mailoauth.set_logger("3", None)
