"""The reviewer page in headless Chromium (Selenium + chromium-driver, system binaries).

A reviewer logs in, sees the request with its gates and approvals, approves, and the alias
moves; a user without the role sees no approve button and a forged POST is refused.
Skipped when Chromium or chromedriver is missing, except under ``CI=true`` where it fails
(CI installs: ``apt-get install -y chromium chromium-driver`` and ``pip install selenium``).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.registry.conftest import Env, auth, client_as
from tests.registry.test_server_promotion import aliases, api, new_version

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _need_browser() -> None:
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not p]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        msg = f"headless browser test needs {', '.join(missing)} (apt chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI=true requires it")
        pytest.skip(msg)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Selenium."""
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def login(driver: Any, env: Env, user: str) -> None:
    """Basic-auth login: every request of the browser carries the user's credentials."""
    token = base64.b64encode(":".join(auth(user)).encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )
    driver.get(f"{env.url}/guard/")


def test_reviewer_page(
    reg_env: Env, browser: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    alice = client_as(reg_env, "alice", monkeypatch)
    name = "fraud-web"
    v, _ = new_version(reg_env, alice, name, tmp_path, lineage=True)
    comment = "<script>alert(1)</script> please review"
    r = api(reg_env, "alice", "request", name=name, version=v, target="production", comment=comment)
    assert r.status_code == 200, r.text
    req_id = r.json()["request"]["id"]
    assert (
        api(reg_env, "bob", "approve", name=name, version=v, target="production").status_code == 200
    )

    # a user without the approver role: sees the request, no buttons; forged posts refused
    login(browser, reg_env, "mallory")
    box = browser.find_element(By.CSS_SELECTOR, f'.req[data-id="{req_id}"]')
    assert "fraud-web version" in box.text
    assert box.find_elements(By.TAG_NAME, "button") == []
    forged = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(location.origin + '/guard/decide', {method: 'POST',
          headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({id: arguments[0], decision: 'approve', csrf: arguments[1]})})
          .then(r => done(r.status));""",
        req_id,
        box.get_attribute("data-csrf"),
    )
    assert forged == 403
    url = f"{reg_env.url}/guard/decide"
    r = requests.post(
        url, data={"id": req_id, "decision": "approve"}, auth=auth("carol"), timeout=60
    )
    assert r.status_code == 400  # a cross-site form post is not JSON
    r = requests.post(url, json={"id": req_id, "decision": "approve", "csrf": "0" * 64},
                      auth=auth("carol"), timeout=60)  # fmt: skip
    assert r.status_code == 403
    assert "CSRF" in r.json()["message"]
    assert aliases(alice, name) == {}

    # a reviewer logs in, sees gates and approvals, approves: the alias moves
    login(browser, reg_env, "carol")
    assert "<script>alert(1)</script>" not in browser.page_source
    box = browser.find_element(By.CSS_SELECTOR, f'.req[data-id="{req_id}"]')
    assert "&lt;script&gt;" in box.get_attribute("innerHTML")
    gate = box.find_element(By.CSS_SELECTOR, "tr.gate").text
    assert "accuracy" in gate
    assert "0.95" in gate
    assert ">= 0.9" in gate
    assert "pass" in gate
    assert "counted: bob" in box.text
    assert "commit=c0ffee12" in box.text
    assert "data/train.csv (unsigned)" in box.text
    assert "clean" in box.text
    assert "1 of 2 required" in box.text
    box.find_element(By.CSS_SELECTOR, 'button[data-decision="approve"]').click()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and aliases(alice, name) != {"production": v}:
        time.sleep(0.5)
    assert aliases(alice, name) == {"production": v}
    st = requests.get(f"{reg_env.url}/api/2.0/mlflow-guard/promotions/status",
                      params={"id": req_id}, auth=auth("bob"), timeout=60).json()  # fmt: skip
    assert st["requests"][0]["state"] == "promoted"
    assert sorted(a["approver"] for a in st["status"]["counted"]) == ["bob", "carol"]
