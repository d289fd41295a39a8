"""End-to-end: the supervisor console in real headless Chromium (Debian's ``chromium``,
driven by Playwright) on a running ``voicecast serve`` with the sandbox Asterisk.

The admin is created from the shell (``voicecast user add``), logs in with password and
TOTP (enrolling from the page), creates a supervisor; the supervisor enrols, uploads the
example list and message, creates and starts a campaign and watches the dashboard's
counters change over the WebSocket while the sandbox's callees answer. A viewer sees no
start button and the API refuses them with 403.

Set ``VOICECAST_SCREENSHOTS=DIR`` to keep the dashboard screenshot (the README's
``docs/dashboard.png`` comes from this test).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .conftest import REPO, VOICECAST, Workspace

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
# Chromium on a machine without network access: no background connections, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "fictional pass phrase 42"
EXAMPLE_LIST = REPO / "examples" / "contacts.csv"
EXAMPLE_MESSAGE = REPO / "sounds" / "example-message.wav"


def _http(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _user_add(ws: Workspace, name: str, role: str) -> None:
    proc = subprocess.run(
        [*VOICECAST, "user", "add", name, "--role", role, "--password-stdin"],
        input=PASSWORD + "\n",
        env={**os.environ, "VOICECAST_CONFIG": str(ws.config)},
        cwd=ws.dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def served(workspace: Workspace) -> Iterator[str]:
    """``voicecast serve`` (dialer + console) on the workspace; yields the console's URL."""
    base = f"http://127.0.0.1:{workspace.settings.web.port}"
    server = workspace.popen("serve")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _body = _http(base + "/healthz")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                output = server.communicate(timeout=10)[0]
                pytest.fail(f"serve did not become healthy:\n{output}")
            time.sleep(0.3)
        yield base
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            output, _ = server.communicate(timeout=60)
            assert server.returncode == 0, output


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _new_page(browser: Browser, base: str) -> Page:
    context = browser.new_context(
        base_url=base, locale="en-GB", viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    return context.new_page()


def _first_login(page: Page, name: str) -> list[str]:
    """Log in for the first time: password, TOTP enrolment from the page; returns the
    recovery codes shown once."""
    page.goto("/login")
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#totp-secret")).to_be_visible()
    secret = re.sub(r"\s+", "", page.inner_text("#totp-secret"))
    page.fill("#enrol-code", pyotp.TOTP(secret).now())
    page.click("#enrol-submit")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    codes = page.locator("#recovery-codes li").all_inner_texts()
    page.click("#continue")
    return codes


def _logout(page: Page) -> None:
    page.click("form.logout button[type=submit]")
    expect(page.locator("#login-password")).to_be_visible()


def _forged_post_is_refused(page: Page, base: str, tmp_path: Path) -> None:
    """A page of another origin (same host, other port: same site, so the SameSite cookie
    IS sent) auto-submits a form creating an admin: the CSRF check must refuse it."""
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "index.html").write_text(
        f'<form id="f" method="post" action="{base}/users">'
        '<input name="name" value="mallory"><input name="role" value="admin">'
        '<input name="password" value="mallory password 123"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(evil))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            with page.expect_response(f"{base}/users") as answer:
                page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
            assert answer.value.status == 403
        finally:
            httpd.shutdown()
    page.goto("/users")
    expect(page.locator("#users-table tr[data-user=super1]")).to_have_count(1)
    expect(page.locator("#users-table tr[data-user=mallory]")).to_have_count(0)


def test_admin_creates_supervisor_who_runs_a_campaign_and_watches_it_live(
    workspace: Workspace, served: str, browser: Browser, tmp_path: Path
) -> None:
    ws = workspace
    _user_add(ws, "admin1", "admin")
    health = _http(served + "/healthz")
    assert health[0] == 200 and health[1]["checks"]["ami"]["ok"] is True, health

    admin = _new_page(browser, served)
    _first_login(admin, "admin1")
    admin.goto("/users")
    admin.fill("#new-user-name", "super1")
    admin.select_option("#new-user-role", "supervisor")
    admin.fill("#new-user-password", PASSWORD)
    admin.click("#new-user-submit")
    expect(admin.locator("#users-table tr[data-user=super1]")).to_have_attribute(
        "data-role", "supervisor"
    )
    _forged_post_is_refused(admin, served, tmp_path)
    _logout(admin)

    sup = _new_page(browser, served)
    _first_login(sup, "super1")

    sup.goto("/lists/upload")
    upload = sup.locator("#upload-form")
    upload.locator("input[name=list]").fill("clients")
    upload.locator("input[type=file]").set_input_files(str(EXAMPLE_LIST))
    upload.locator("button[type=submit]").click()
    mapping = sup.locator("#mapping-form")
    expect(mapping).to_be_visible()
    sup.click("#import-submit")
    expect(sup.locator("#import-summary")).to_have_attribute("data-imported", "10")

    sup.goto("/audio")
    audio = sup.locator("#audio-upload-form")
    audio.locator("input[name=name]").fill("welcome")
    audio.locator("input[type=file]").set_input_files(str(EXAMPLE_MESSAGE))
    audio.locator("button[type=submit]").click()
    expect(sup.locator("audio[data-audio-player][src='/audio/welcome.wav']")).to_have_count(1)

    sup.goto("/campaigns/new")
    c = sup.locator("#campaign-form")
    c.locator("input[name=name]").fill("live-demo")
    c.locator("select[name=list]").select_option("clients")
    c.locator("select[name=message]").select_option("welcome")
    c.locator("input[name=caller_id]").fill("01 62 00 00 00")
    c.locator("input[name=max_channels]").fill("10")
    c.locator("input[name=cps]").fill("5")
    c.locator("input[name=retries]").fill("0")
    c.locator("select[name=purpose]").select_option("informational")
    c.locator("select[name=audience]").select_option("b2c")
    c.locator("input[name=sender]").fill("Test Sender")
    c.locator("input[name=on_behalf_of]").fill("Test Sender")
    c.locator("[name=legal_basis]").select_option("contract")
    c.locator("[name=optout_key]").fill("9")
    sup.click("#create-campaign")
    expect(sup.locator("#campaign-status")).to_have_attribute("data-status", "draft")
    sup.click("#start-campaign")
    sup.wait_for_load_state()
    if sup.locator("#action-error").count():
        pytest.fail("start refused: " + sup.inner_text("#action-error"))
    expect(sup.locator("#campaign-status")).to_have_attribute("data-status", "running")

    sup.click("#dashboard-link")
    expect(sup.locator("#live-state")).to_have_attribute("data-state", "live")
    updated = sup.locator("#dashboard")
    first = int(updated.get_attribute("data-updated") or "0")
    # the counters change while calls happen, without reloading the page
    expect(sup.locator("#stat-calls-up")).not_to_have_text("0", timeout=30_000)
    expect(sup.locator("#stat-done")).to_have_text("10", timeout=90_000)
    assert int(updated.get_attribute("data-updated") or "0") > first
    expect(sup.locator("#outcomes tr[data-outcome=human] .count")).to_have_text("2")
    expect(sup.locator("#campaign-status")).to_have_attribute("data-status", "completed")
    shot = tmp_path / "dashboard.png"
    sup.screenshot(path=str(shot), full_page=True)
    keep = os.environ.get("VOICECAST_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "dashboard.png").write_bytes(shot.read_bytes())


def test_a_viewer_has_no_start_button_and_the_api_refuses_them(
    workspace: Workspace, served: str, browser: Browser
) -> None:
    ws = workspace
    ws.vc("audio", "add", str(EXAMPLE_MESSAGE), "--name", "welcome")
    ws.vc("contacts", "import", str(EXAMPLE_LIST), "--list", "clients")
    ws.create_campaign("quiet", "clients", "welcome", "--caller-id", "01 62 00 00 00")
    _user_add(ws, "viewer1", "viewer")
    token = ws.vc("user", "token", "viewer1", "--name", "crm").stdout.strip().split()[-1]

    page = _new_page(browser, served)
    _first_login(page, "viewer1")
    page.goto("/campaigns/quiet")
    expect(page.locator("h1")).to_contain_text("quiet")
    expect(page.locator("#start-campaign")).to_have_count(0)

    status, body = _http(
        served + "/api/v1/campaigns/quiet/start",
        data=b"",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = _http(
        served + "/api/v1/campaigns/quiet", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200 and body["status"] == "draft"
