"""The browser consent in a real (headless) Chromium driven by Selenium: the
host reads the authorize URL from op_info, the user accepts or cancels on the
IdP's page, the browser lands on our loopback listener's page; afterwards a
fresh process gets tokens for every protocol without a second consent.

Needs Debian's chromium and chromium-driver and pip's selenium; Selenium
Manager is kept from downloading anything (explicit driver and browser)."""

from __future__ import annotations

import os
import shutil
from urllib.parse import parse_qs, urlparse

import pytest

import mailoauth_ctypes as mo
from stackutil import ALICE, SCOPES, run_child

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.usefixtures("need_consent")


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} missing (apt-get install chromium chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-proxy-server",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()  # ends Chromium and stops chromedriver
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_listener_page(driver, title):
    """Waits until the browser shows our loopback page (`title` in its h1)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def landed(d):
        u = urlparse(d.current_url)
        if u.hostname not in ("localhost", "127.0.0.1", "::1", "[::1]"):
            return False
        h1 = d.find_elements(By.TAG_NAME, "h1")
        return bool(h1) and h1[0].text == title

    WebDriverWait(driver, 30, poll_frequency=0.05).until(landed)
    return driver.find_element(By.TAG_NAME, "body").text


def test_browser_consent_then_tokens_in_a_fresh_process(lib, stack, ctx, idp, browser, config_file, tmp_path):
    from selenium.webdriver.common.by import By

    req = {"account": ALICE, "flow": "browser", "protocols": ["smtp", "imap", "pop3"]}
    with ctx.consent_begin(req) as op:
        info = op.info()
        assert info["state"] == "waiting_for_user", info
        url = info["authorize_url"]
        q = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
        assert url.startswith(stack["idp"]["http"] + "/")
        assert q["login_hint"] == ALICE
        assert q["code_challenge_method"] == "S256"
        assert q["redirect_uri"].startswith("http://localhost:")
        for s in SCOPES["smtp"], SCOPES["imap"], SCOPES["pop3"]:
            assert s in q["scope"].split()
        assert "offline_access" in q["scope"].split()

        browser.get(url)
        assert browser.find_element(By.ID, "username").get_attribute("value") == ALICE
        permissions = browser.find_element(By.ID, "permissions").text
        assert "SMTP.Send" in permissions and "IMAP.AccessAsUser.All" in permissions
        browser.save_screenshot(str(tmp_path / "consent-page.png"))
        assert (tmp_path / "consent-page.png").stat().st_size > 0

        browser.find_element(By.ID, "accept").click()
        text = wait_for_listener_page(browser, "Sign-in complete")
        assert "You are signed in" in text
        assert "code=" not in browser.page_source  # the code is not echoed

        assert op.wait(30000) == mo.OK
        assert op.info()["state"] == "done"
        res = op.result()
    assert res["account"] == ALICE
    assert res["username"] == ALICE
    assert res["tenant_id"] == stack["idp"]["tenant"]
    for s in SCOPES["smtp"], SCOPES["imap"], SCOPES["pop3"]:
        assert s in res["scopes"], res
    assert isinstance(res.get("expires_at"), int)
    assert idp.grants("authorization_code") == 1

    # Another instance of the host: same configuration and cache folder.
    out = run_child("tokens", config_file, ALICE, "smtp", "imap", "pop3")
    for p in ("smtp", "imap", "pop3"):
        assert out["results"][p]["ok"], out["results"][p]
    assert idp.grants("authorization_code") == 1, "a second consent was needed"
    [entry] = out["accounts"]
    assert entry["account"] == ALICE
    assert entry["username"] == ALICE
    assert entry["tenant_id"] == stack["idp"]["tenant"]
    assert sorted(entry["protocols"]) == ["imap", "pop3", "smtp"]
    assert entry["state"] == "ok"
    assert isinstance(entry["since"], int) and isinstance(entry["access_token_expires_at"], int)
    assert entry["access_token_expires_at"] > entry["since"]
    assert "refresh_token" not in str(entry) and "access_token\"" not in str(entry)
    # this process sees the same
    [mine] = ctx.account_list()
    assert mine["account"] == ALICE and mine["state"] == "ok"


def test_browser_consent_cancelled_by_the_user(lib, ctx, idp, browser):
    from selenium.webdriver.common.by import By

    with ctx.consent_begin({"account": ALICE, "flow": "browser"}) as op:
        browser.get(op.info()["authorize_url"])
        browser.find_element(By.ID, "cancel").click()
        text = wait_for_listener_page(browser, "Sign-in failed")
        assert "close this window" in text
        with pytest.raises(mo.MailOAuthError) as e:
            op.wait(30000)
        assert e.value.code == mo.DECLINED, e.value
        assert e.value.provider_code == "AADSTS65004", e.value.error
        assert lib.last_error()["code"] == mo.DECLINED
        assert op.info()["state"] == "failed"
        with pytest.raises(mo.MailOAuthError) as e:
            op.result()
        assert e.value.code == mo.DECLINED
    assert ctx.account_list() == []
    assert idp.grants("authorization_code") == 0
