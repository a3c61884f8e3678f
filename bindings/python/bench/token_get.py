"""What the Python layer adds to a warm mailoauth_token_get: the same call
through raw ctypes and through Context.token_get / token_get_bytes, against
the local stack (tests/stack/up.sh), best of 5 runs of 20,000 calls.

    MAILOAUTH_LIBRARY=target/release/libmailoauth.so python3 bindings/python/bench/token_get.py
"""

from __future__ import annotations

import ctypes
import sys
import tempfile
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import conftest  # noqa: E402,F401  (the package from this tree, the stack helpers)
import mailoauth  # noqa: E402
from binding_helpers import ALICE, sign_in  # noqa: E402
from stackutil import Idp, load_stack, make_config  # noqa: E402


def main() -> None:
    stack = load_stack()
    if stack is None:
        sys.exit("the local stack is not up: tests/stack/up.sh")
    idp = Idp(stack["idp"]["http"])
    idp.reset()
    lib = mailoauth.Library.load()
    with mailoauth.Context(make_config(stack, tempfile.mkdtemp()), library=lib) as ctx:
        sign_in(ctx, idp, ALICE, ("imap",))
        raw, h, acc, proto = lib.raw, ctx.handle, ALICE.encode(), b"imap"

        def raw_call() -> str:
            out = ctypes.c_void_p()
            raw.mailoauth_token_get(h, acc, proto, 0, ctypes.byref(out))
            try:
                return ctypes.string_at(out.value).decode()
            finally:
                raw.mailoauth_secret_free(out)

        print(f"library {lib.path} {lib.version()}")
        n = 20_000
        for label, fn in (("raw ctypes", raw_call),
                          ("Context.token_get", lambda: ctx.token_get(ALICE, "imap")),
                          ("Context.token_get_bytes", lambda: ctx.token_get_bytes(ALICE, "imap"))):
            best = min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6
            print(f"{label:26s} {best:6.1f} µs per call")
    idp.reset()


if __name__ == "__main__":
    main()
