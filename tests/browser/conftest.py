"""Browser fixtures: a running service holding a CT series, and Chromium.

The service is real (``dicom-service serve`` on loopback, the series sent by
DCMTK storescu, an enrolment token issued by the CLI); the browser is Debian's
Chromium driven by Playwright's sync API (Playwright's own browser download
does not work offline). One service and one browser per session: the machine
is small.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from sample_data.generate import write_ct_series
from tests.conftest import CENTRE, PEER
from tests.support.peers import storescu
from tests.support.service import ServiceProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
CT_SLICES = 12
PATIENT_ID = "BENCH-0001"
ISSUER = "HOSP-A"


@dataclass
class CtService:
    service: ServiceProcess
    pseudonym: str
    token: str
    study: str
    series: str
    # pseudonymous SOP instance UIDs in slice (instance number) order
    sops: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"

    def viewer_url(self) -> str:
        return f"{self.url}/viewer/index.html#study={self.study}&token={self.token}"

    def stored_file(self, sop: str) -> Path:
        """The de-identified file the service stored for ``sop``."""
        rows = self.service.query("SELECT path FROM instances WHERE sop_uid = ?", sop)
        return self.service.data_dir / "store" / str(rows[0][0])


@pytest.fixture(scope="session")
def ct_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CtService]:
    series_dir = tmp_path_factory.mktemp("ct")
    files = write_ct_series(series_dir, n=CT_SLICES, size=512, patient_id=PATIENT_ID,
                            issuer=ISSUER)
    svc = ServiceProcess(tmp_path_factory.mktemp("viewer") / "data")
    svc.setup_peer(CENTRE, PEER)
    pseudonym = svc.enrol(CENTRE, PATIENT_ID, ISSUER)
    token = svc.cli("tokens", "issue", "--enrolment", pseudonym).stdout.strip()
    with svc:
        result = storescu(files, "127.0.0.1", svc.dicom_port, svc.ae_title, PEER)
        assert result.returncode == 0, result.stderr[-2000:]
        rows = svc.query("SELECT study_uid, series_uid, sop_uid FROM instances "
                         "ORDER BY instance_number")
        assert len(rows) == CT_SLICES
        yield CtService(svc, pseudonym, token, rows[0][0], rows[0][1], [r[2] for r in rows])


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (1280x800, 1 device pixel per CSS pixel) that fails the test
    on any JavaScript error or console error (refused requests excepted: tests
    check those themselves). The page's Content Security Policy is bypassed
    only because Playwright's polling (``wait_for_function``) evaluates strings."""
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  device_scale_factor=1, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", console)
    try:
        yield page
        assert not errors, errors
    finally:
        context.close()
