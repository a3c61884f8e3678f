"""Fixtures for the Python binding's tests: the package from this source
tree, the library (``$MAILOAUTH_LIBRARY``, default ``<repo>/target/debug``),
the local stack (``tests/stack/up.sh``; ``$MAILOAUTH_STACK_FILE``) with its
identity imitation reset before every test, and a configuration for it with
a fresh cache folder per test. The stack helpers are the host tests' own
(tests/host/stackutil.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))  # the package from this tree, also when one is installed
sys.path.insert(1, str(ROOT / "tests" / "host"))

_default_lib = ROOT / "target" / "debug" / "libmailoauth.so"
if not os.environ.get("MAILOAUTH_LIBRARY") and _default_lib.exists():
    os.environ["MAILOAUTH_LIBRARY"] = str(_default_lib)

import mailoauth  # noqa: E402
from stackutil import STACK_FILE, Idp, load_stack, make_config, skip_or_fail  # noqa: E402


@pytest.fixture(scope="session")
def lib() -> mailoauth.Library:
    path = mailoauth.find_library()
    try:
        return mailoauth.Library.load(path)
    except mailoauth.LibraryNotFoundError as e:
        skip_or_fail(f"{e} (cargo build)")
        raise


@pytest.fixture(scope="session")
def stack() -> dict:
    s = load_stack()
    if s is None:
        skip_or_fail(f"the local stack is not up ({STACK_FILE} missing or its IdP not answering): "
                     "start it with tests/stack/up.sh")
    return s


@pytest.fixture
def idp(stack) -> Idp:
    i = Idp(stack["idp"]["http"])
    i.reset()
    return i


@pytest.fixture
def config(stack, tmp_path) -> dict:
    d = tmp_path / "cache"
    d.mkdir()
    return make_config(stack, d)


@pytest.fixture
def ctx(lib, config):
    with mailoauth.Context(config, library=lib) as c:
        yield c


@pytest.fixture
def offline_config(tmp_path) -> dict:
    """A configuration that needs no stack (nothing is contacted)."""
    return {"client_id": "00000000-0000-0000-0000-000000000000", "tenant": "contoso.com",
            "cache": {"protection": "none", "path": str(tmp_path / "cache")}, "browser": "none"}
