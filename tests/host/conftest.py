"""Fixtures for the host-level tests: the library through ctypes, the local
stack (tests/stack/up.sh), a configuration for it with a fresh cache folder
per test, and the IdP's admin API (reset before every test). Helpers live in
stackutil.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mailoauth_ctypes as mo  # noqa: E402
from stackutil import STACK_FILE, Idp, load_stack, make_config, need, skip_or_fail  # noqa: E402


# ---- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="session")
def lib() -> mo.Library:
    path = mo.default_library_path()
    if not os.path.exists(path):
        skip_or_fail(f"{path} not built (cargo build)")
    return mo.Library.load(path)


@pytest.fixture(scope="session")
def stack() -> dict:
    s = load_stack()
    if s is None:
        skip_or_fail(
            f"the local stack is not up ({STACK_FILE} missing or its IdP not answering): "
            "start it with tests/stack/up.sh, or run tests/run.sh"
        )
    return s


@pytest.fixture
def idp(stack) -> Idp:
    i = Idp(stack["idp"]["http"])
    i.reset()
    return i


@pytest.fixture(autouse=True)
def _reset_idp_before_each_test():
    """Every test starts with a fresh IdP (settings, tokens, consents, counters)."""
    s = load_stack()
    if s is not None:
        Idp(s["idp"]["http"]).reset()
    yield


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    d = tmp_path / "cache"
    d.mkdir()
    return d


@pytest.fixture
def config(stack, cache_dir) -> dict:
    return make_config(stack, cache_dir)


@pytest.fixture
def config_file(config, tmp_path) -> Path:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(config))
    return p


@pytest.fixture
def ctx(lib, config):
    c = lib.context(config)
    yield c
    c.free()


@pytest.fixture
def need_consent(lib):
    need(lib, "mailoauth_consent_begin", "mailoauth_op_wait", "mailoauth_op_info", "mailoauth_op_result")


