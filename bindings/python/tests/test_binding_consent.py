"""The consent operation: wait (blocking with a timeout), poll from a UI
timer, info and result, the blocking consent() helper with its timeout,
cancel from another thread, close from another thread, await, the device
flow, and failures (DECLINED) raised from wait."""

from __future__ import annotations

import asyncio
import threading

import pytest

import mailoauth
from binding_helpers import ALICE, BOB, eventually, in_thread
from mailoauth import MailOAuthError
from stackutil import follow_authorize


def begin(ctx, **extra) -> mailoauth.Operation:
    return ctx.consent_begin(dict({"account": ALICE, "flow": "browser"}, **extra))


def test_poll_wait_info_result(ctx, idp):
    idp.settings(auto_consent=True)
    with begin(ctx, protocols=["smtp", "imap"]) as op:
        assert op.poll() is False, "nobody approved yet"
        assert op.wait(0) is False
        info = op.info()
        assert info["state"] == "waiting_for_user" and info["authorize_url"].startswith(idp.base)
        with pytest.raises(MailOAuthError) as e:
            op.result()
        assert e.value.code == mailoauth.INVALID_STATE
        assert follow_authorize(info["authorize_url"]).status_code == 200
        assert op.wait(30_000) is True
        assert op.poll() is True
        assert op.info()["state"] == "done"
        res = op.result()
    assert res["account"] == ALICE and "https://outlook.office.com/SMTP.Send" in res["scopes"]
    assert op.closed
    assert ctx.token_get(ALICE, "smtp")


def test_ui_timer_style_polling(ctx, idp):
    idp.settings(auto_consent=True)
    with begin(ctx) as op:
        threading.Thread(target=follow_authorize, args=(op.info()["authorize_url"],)).start()
        eventually(op.poll, "the consent finished")
        assert op.result()["account"] == ALICE


def test_consent_helper_times_out_and_cancels(ctx, idp):
    with pytest.raises(MailOAuthError) as e:
        ctx.consent({"account": ALICE, "flow": "browser"}, timeout_ms=600)
    assert e.value.code == mailoauth.TIMEOUT and e.value.error["source"] == "binding"
    with pytest.raises(MailOAuthError) as e:
        ctx.token_get(ALICE, "smtp")
    assert e.value.code == mailoauth.CONSENT_REQUIRED


def test_consent_helper_with_the_device_flow(ctx, idp):
    with ctx.consent_begin({"account": BOB, "flow": "device", "protocols": ["imap"]}) as op:
        info = eventually(lambda: op.info().get("user_code") and op.info(), "a user code")
        assert info["verification_uri"] and info["message"]
        idp.device_approve(info["user_code"], user=BOB)
        assert op.wait(30_000) is True
        assert op.result()["account"] == BOB


def test_declined_is_raised_by_wait(ctx, idp):
    with ctx.consent_begin({"account": BOB, "flow": "device"}) as op:
        code = eventually(lambda: op.info().get("user_code"), "a user code")
        idp.device_deny(code)
        with pytest.raises(MailOAuthError) as e:
            op.wait(30_000)
        assert e.value.code == mailoauth.DECLINED and e.value.function == "mailoauth_op_wait"
        with pytest.raises(MailOAuthError) as e:
            op.result()
        assert e.value.code == mailoauth.DECLINED


def _waiter(op):
    return in_thread(lambda: op.wait(-1))


def test_cancel_from_another_thread(ctx, idp):
    with begin(ctx) as op:
        t, out = _waiter(op)
        while t.is_alive():  # until the waiting call has seen it
            op.cancel()
            t.join(0.05)
        assert out == {"code": mailoauth.CANCELLED}
        assert op.info()["state"] == "cancelled"


def test_close_from_another_thread_cancels_the_wait(ctx, idp):
    op = begin(ctx)
    t, out = _waiter(op)
    eventually(lambda: op._busy, "the waiter is inside op_wait")
    op.close()  # cancels, waits for the waiter to leave, frees
    t.join(10)
    assert not t.is_alive() and out == {"code": mailoauth.CANCELLED}
    assert op.closed


def test_closing_the_context_cancels_its_operation(lib, config, idp):
    c = mailoauth.Context(config, library=lib)
    op = begin(c)
    t, out = _waiter(op)
    eventually(lambda: op._busy, "the waiter is inside op_wait")
    c.close()
    t.join(10)
    assert not t.is_alive() and out == {"code": mailoauth.CANCELLED}
    op.close()


def test_await(ctx, idp):
    idp.settings(auto_consent=True)

    async def main():
        with begin(ctx) as op:
            task = asyncio.ensure_future(op.wait_async())
            await asyncio.get_running_loop().run_in_executor(None, follow_authorize, op.info()["authorize_url"])
            return await task

    assert asyncio.run(main())["account"] == ALICE


def test_await_cancelled(ctx, idp):
    async def main():
        op = begin(ctx)
        task = asyncio.ensure_future(op.wait_async())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return op

    op = asyncio.run(main())
    with pytest.raises(MailOAuthError) as e:
        op.wait(10_000)
    assert e.value.code == mailoauth.CANCELLED
    op.close()


def test_ctrl_c_during_wait_cancels_the_consent(ctx, idp):
    import os
    import signal

    op = begin(ctx)

    def interrupt():
        eventually(lambda: op._busy, "the main thread is inside op_wait")
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        op.wait(-1)
    t.join()
    # The cancel has been sent; the flow's task ends it a moment later.
    with pytest.raises(MailOAuthError) as e:
        op.wait(10_000)
    assert e.value.code == mailoauth.CANCELLED
    assert op.info()["state"] == "cancelled"
    op.close()
