"""Fixtures of the page tests: the demo site (a real ``dicom-service serve``
seeded by :func:`dicom_service.demo.load_demo`) and Chromium.

Chromium is Debian's, driven by Playwright's sync API. That API allows one
Playwright per thread, and ``tests/browser`` keeps its own for the whole
session; so these tests drive their Chromium from one dedicated thread
(:class:`BrowserThread`), whatever else runs in the session. One service and
one browser per module: the machine is small.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    sync_playwright,
)

from dicom_service.app import build_services
from dicom_service.config import Settings
from dicom_service.demo import CREDENTIALS_FILE, DemoAccount, load_demo, read_credentials
from tests.support.service import ServiceProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
# the smallest sample set: a 100-slice 512x512 CT among the other instances
CT_SLICES = 100
T = TypeVar("T")


class BrowserThread:
    """One Chromium, every call to it made from one thread of its own."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._pool.submit(self._start).result(timeout=120)

    def _start(self) -> None:
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM,
                                                         args=CHROMIUM_ARGS)

    def run(self, fn: Callable[[Browser], T]) -> T:
        """``fn(browser)`` on the browser's thread; its exception is raised here."""
        browser = self._browser
        if browser is None:  # pragma: no cover - _start raised already
            raise RuntimeError("Chromium did not start")
        return self._pool.submit(fn, browser).result(timeout=600)

    def close(self) -> None:
        def stop() -> None:
            if self._browser is not None:
                self._browser.close()
            if self._playwright is not None:
                self._playwright.stop()

        try:
            self._pool.submit(stop).result(timeout=60)
        finally:
            self._pool.shutdown()


@dataclass
class DemoSite:
    service: ServiceProcess
    accounts: dict[str, DemoAccount]
    review_panel: int
    draft_panel: int
    user_ids: dict[str, int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"


@dataclass
class Tab:
    """A page in a fresh browser context, with the JavaScript errors it raised."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserThread]:
    thread = BrowserThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    """The demo, as ``serve --demo`` makes it (with a smaller CT), over plain HTTP."""
    service = ServiceProcess(tmp_path_factory.mktemp("pages") / "data")
    with pytest.MonkeyPatch.context() as env:
        # the login cookies are Secure unless this is off (plain HTTP here)
        env.setenv("DICOM_SERVICE_COOKIE_SECURE", "false")
        service.start()
    try:
        services = build_services(Settings(data_dir=service.data_dir))
        try:
            summary = load_demo(services, service.dicom_port, ct_slices=CT_SLICES)
        finally:
            services.close()
        assert f"demo loaded: {CT_SLICES + 16} instances stored, 0 refused" in summary, summary
        found = re.search(r"panel (\d+) in review, panel (\d+) in draft", summary)
        assert found is not None, summary
        accounts = read_credentials(service.data_dir / CREDENTIALS_FILE)
        users = {name: int(i) for i, name in service.query("SELECT id, username FROM users")}
        yield DemoSite(service, accounts, int(found[1]), int(found[2]), users)
    finally:
        service.stop()


def open_tab(browser: Browser) -> Tab:
    """A fresh context (1280x800, 1 device pixel per CSS pixel) collecting
    JavaScript errors. The pages' Content Security Policy is bypassed only
    because Playwright's ``wait_for_function`` evaluates strings."""
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  device_scale_factor=1, bypass_csp=True)
    tab = Tab(context, context.new_page())
    tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))

    def console(message: ConsoleMessage) -> None:
        # refused requests are what some tests provoke; they check the status themselves
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            tab.errors.append(message.text)

    tab.page.on("console", console)
    return tab


def log_in(tab: Tab, site: DemoSite, username: str) -> None:
    """Through the login page: password, then a code of the seeded TOTP key."""
    account = site.accounts[username]
    page = tab.page
    page.goto(f"{site.url}/app/index.html")
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Continue").click()
    code = page.locator("#code")  # the second step's field (the enrolment step has its own)
    code.wait_for(state="visible")
    code.fill(account.totp().now())
    page.get_by_role("button", name="Log in", exact=True).click()
    page.wait_for_url(f"{site.url}/app/panels.html")
    page.wait_for_selector("body[data-ready]")
