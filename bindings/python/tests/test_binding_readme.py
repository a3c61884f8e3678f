"""The README's "ten lines" run as written against the stack (with the
stack's configuration and accounts substituted), so the example cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import mailoauth
from binding_helpers import ALICE, BOB, seed, sign_in, stored

README = Path(__file__).resolve().parents[1] / "README.md"


def snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "no python block in the README"
    return blocks[0]


def test_the_readme_example_runs(ctx, config, idp, lib, stack):
    code = snippet()
    assert '{"client_id": "…", "tenant": "contoso.com"}' in code
    code = code.replace('{"client_id": "…", "tenant": "contoso.com"}', "CONFIG")
    code = code.replace("crm@contoso.com", ALICE).replace("bob@contoso.com", BOB)
    sign_in(ctx, idp, ALICE)  # the same cache folder: the example finds the grant
    seed(ALICE, 1, 4242)
    fetched = []
    env = {"CONFIG": config, "process": fetched.append, "__name__": "readme"}
    exec(compile(code, str(README), "exec"), env)  # noqa: S102 - our own README
    assert env["mailoauth"] is mailoauth
    assert isinstance(env["ctx"], mailoauth.Context) and env["ctx"].closed
    assert fetched and set(fetched) <= set(stored(stack, ALICE).values()), "polled, fetched and acknowledged"
