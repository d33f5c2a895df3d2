"""End to end: `productlens dashboard` on a free loopback port, driven by Debian's Chromium
(headless, through Playwright, never a browser of Playwright's own). Every page opens
without an error, a filter changes a number as the warehouse says, the overview's KPIs
are the warehouse's; a screenshot per page and each page's render time (printed, not
asserted) land in the test's folder."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from productlens.dashboard.pages import PAGES
from tests.conftest import open_readonly, q

CHROMIUM = Path("/usr/bin/chromium")
# The network is closed: nothing in the background may try to reach it.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT = 120  # seconds for the server to answer
PAGE_TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def dashboard(
    project: Path, log: Path, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`productlens --project PROJECT [ARGS] dashboard` on a free loopback port, its output
    in `log`; its URL and process, stopped (SIGTERM, as Ctrl-C's sibling) after."""
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "productlens",
            "--project",
            str(project),
            *args,
            "dashboard",
            "--port",
            str(port),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {}), "NO_COLOR": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


@pytest.fixture
def server(demo_project: Path, tmp_path: Path) -> Iterator[str]:
    """`productlens dashboard` on the demo project; its URL."""
    with dashboard(demo_project, tmp_path / "server.log") as (url, _):
        yield url


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    """A page of Debian's Chromium, headless, on an empty profile."""
    assert CHROMIUM.exists(), (
        "the browser test drives Debian's chromium: `apt-get install chromium` "
        "(make test installs it when run as root)"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


def settled(page: Page, title: str, timeout_ms: float = PAGE_TIMEOUT_MS) -> None:
    """Wait until the page's title is shown and its script has finished running."""
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=timeout_ms)
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=timeout_ms
    )


def kpi(page: Page, label: str) -> str:
    metric = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return metric.get_by_test_id("stMetricValue").inner_text()


@pytest.mark.slow
def test_every_page_in_chromium(
    server: str, demo_project: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    engine = open_readonly(demo_project)
    try:
        one = lambda sql, *p: engine.fetch_all(q(sql, *p))[0][0]  # noqa: E731
        last = one("select max(event_date) from core.fct_events")
        first = one("select min(event_date) from core.fct_events")
        length = max(1, min(7, ((last - first).days + 1) // 2))
        start = last - timedelta(days=length - 1)
        window = "from core.fct_events where event_date between ? and ?"
        users = one(f"select count(distinct user_id) {window}", start, last)
        events = one(f"select count(*) {window}", start, last)
        device = one("select min(device) from core.fct_events")
        device_users = one(
            f"select count(distinct user_id) {window} and device = ?", start, last, device
        )
    finally:
        engine.close()
    assert device_users != users, "the filter must change the number for the test to see it"

    timings: dict[str, float] = {}
    with chromium(tmp_path / "profile") as page:
        began = time.monotonic()
        page.goto(f"{server}/?page=overview")
        settled(page, "Overview")
        timings["overview (first load)"] = time.monotonic() - began
        assert kpi(page, "active users") == f"{users:,}"
        assert kpi(page, "events") == f"{events:,}"

        sidebar = page.get_by_test_id("stSidebar")
        for slug, spec in PAGES.items():
            began = time.monotonic()
            sidebar.get_by_text(spec.title, exact=True).click()
            settled(page, spec.title)
            timings[slug] = time.monotonic() - began
            assert page.get_by_test_id("stException").count() == 0, slug
            assert page.get_by_test_id("stAlertContentError").count() == 0 or (
                slug == "experiments"  # a sample ratio mismatch banner is an error box
            ), slug
            page.screenshot(path=str(tmp_path / f"{slug}.png"), full_page=True)
        assert page.url.endswith("page=health")

        # A filter: one device only; the overview counts that device's users.
        sidebar.get_by_text("Overview", exact=True).click()
        settled(page, "Overview")
        sidebar.get_by_test_id("stMultiSelect").filter(has_text="Device").click()
        page.get_by_role("option", name=device, exact=True).click()
        page.keyboard.press("Escape")
        expect(
            page.get_by_test_id("stMetric")
            .filter(has=page.get_by_test_id("stMetricLabel").get_by_text("active users"))
            .get_by_test_id("stMetricValue")
        ).to_have_text(f"{device_users:,}", timeout=PAGE_TIMEOUT_MS)
        page.screenshot(path=str(tmp_path / "overview_filtered.png"), full_page=True)
    report = "\n".join(f"{name}: {seconds:.2f} s" for name, seconds in timings.items())
    (tmp_path / "render_times.txt").write_text(report + "\n")
    # Shown in the run's summary (conftest), whichever xdist worker ran the test.
    record_property("measured", f"dashboard render times (screenshots in {tmp_path}):\n{report}")
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted([*PAGES, "overview_filtered"])
