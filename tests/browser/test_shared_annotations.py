"""Two panel members, each logged in (session cookie, no token), open the
viewer for the panel: what one measures the other sees, through the real
annotations API and the same-origin credentials (with the CSRF header)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from sqlalchemy import select

from dicom_service.app import build_services
from dicom_service.care.accounts import AccountService
from dicom_service.config import Settings
from dicom_service.db.models import (
    CentreNetwork,
    Enrolment,
    Network,
    Panel,
    PanelMember,
    PanelStudy,
    ThematicArea,
    User,
    UserRole,
)
from dicom_service.web.auth import CSRF_COOKIE, SESSION_COOKIE
from tests.browser.conftest import CT_SLICES, SCREENSHOTS, CtService
from tests.conftest import CENTRE

PASSWORD = "correct horse battery staple 42"


@dataclass
class PanelSetup:
    panel_id: int
    # username -> (session token, CSRF token)
    sessions: dict[str, tuple[str, str]]


def _log_in(accounts: AccountService, user_id: int, username: str) -> tuple[str, str]:
    """A complete session through the real login steps (password, TOTP enrolment)."""
    accounts.begin_totp_enrolment(user_id, actor="test")
    with accounts.db.engine.connect() as conn:
        secret = conn.scalar(select(User.totp_secret).where(User.id == user_id))
    assert secret is not None
    pending = accounts.login(username, PASSWORD)
    session, _codes = accounts.confirm_enrolment(pending.session_token,
                                                 pyotp.TOTP(secret).now())
    return session, accounts.csrf_token(session)


@pytest.fixture(scope="module")
def panel(ct_service: CtService) -> Iterator[PanelSetup]:
    services = build_services(Settings(data_dir=ct_service.service.data_dir))
    try:
        secret = services.settings.server_secret
        assert secret is not None
        accounts = AccountService(services.db, secret)
        users = {name: accounts.create_user(name, display_name=f"Dr {name.title()}",
                                            password=PASSWORD, actor="test")
                 for name in ("lead", "member")}
        with services.db.session() as s:
            enrolment_id = s.scalar(select(Enrolment.id).where(
                Enrolment.pseudonym == ct_service.pseudonym))
            centre_id = services.care.centre_id(CENTRE)
            network = Network(name="ERN-VIEWER")
            s.add(network)
            s.flush()
            s.add(CentreNetwork(centre_id=centre_id, network_id=network.id))
            area = ThematicArea(network_id=network.id, code="thorax", name="Thorax")
            s.add(area)
            for user_id in users.values():
                s.add(UserRole(user_id=user_id, network_id=network.id,
                               role="health_professional"))
            s.flush()
            row = Panel(network_id=network.id, enrolment_id=enrolment_id, area_id=area.id,
                        lead_user_id=users["lead"], title="Nodule?", state="review")
            s.add(row)
            s.flush()
            s.add(PanelMember(panel_id=row.id, user_id=users["member"], status="accepted"))
            s.add(PanelStudy(panel_id=row.id, study_uid=ct_service.study))
            panel_id = row.id
        sessions = {name: _log_in(accounts, user_id, name) for name, user_id in users.items()}
        yield PanelSetup(panel_id, sessions)
    finally:
        services.close()


def _context(browser: Browser, ct: CtService, session: tuple[str, str]) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  device_scale_factor=1, bypass_csp=True)
    context.add_cookies([
        {"name": SESSION_COOKIE, "value": session[0], "url": ct.url, "httpOnly": True,
         "sameSite": "Strict"},
        {"name": CSRF_COOKIE, "value": session[1], "url": ct.url, "sameSite": "Strict"}])
    return context


def _open(context: BrowserContext, ct: CtService, panel_id: int, errors: list[str],
          *, study: bool = True) -> Page:
    """The viewer for the panel: with the study in the URL, or (``study`` false)
    the panel's shared studies asked from the panel API."""
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    fragment = f"study={ct.study}&panel={panel_id}" if study else f"panel={panel_id}"
    page.goto(f"{ct.url}/viewer/index.html#{fragment}")
    page.wait_for_function("n => window.viewer && window.viewer.status().loaded === n",
                           arg=CT_SLICES, timeout=20_000)
    page.evaluate("() => window.viewer.setZoom(1)")
    return page


def _drag(page: Page, start: tuple[int, int], end: tuple[int, int]) -> None:
    def at(x: int, y: int) -> tuple[float, float]:
        p = page.evaluate("([x, y]) => window.viewer.imageToClient(x, y)", [x, y])
        return p["x"], p["y"]

    page.mouse.move(*at(*start))
    page.mouse.down()
    page.mouse.move(*at(*end), steps=4)
    page.mouse.up()


def test_members_see_each_others_annotations(browser: Browser, ct_service: CtService,
                                             panel: PanelSetup) -> None:
    errors: list[str] = []
    lead_context = _context(browser, ct_service, panel.sessions["lead"])
    member_context = _context(browser, ct_service, panel.sessions["member"])
    try:
        lead = _open(lead_context, ct_service, panel.panel_id, errors)
        lead.keyboard.press("d")
        _drag(lead, (120, 256), (320, 256))
        lead.wait_for_function("() => window.viewer.status().annotations === 1")
        mine = lead.locator('.dv-annotation[data-kind="length"]')
        assert re.fullmatch(r"Length \d+\.\d mm", mine.locator(".dv-annotation-go").inner_text())
        assert mine.locator(".dv-delete").count() == 1

        member = _open(member_context, ct_service, panel.panel_id, errors, study=False)
        member.wait_for_function("() => window.viewer.status().annotations === 1")
        theirs = member.locator('.dv-annotation[data-kind="length"]')
        assert theirs.locator(".dv-author").inner_text() == "Dr Lead"
        assert theirs.locator(".dv-delete").count() == 0  # not the member's to delete
        assert theirs.locator(".dv-annotation-go").inner_text() == \
            mine.locator(".dv-annotation-go").inner_text()

        member.keyboard.press("n")
        _drag(member, (200, 120), (260, 60))
        member.locator(".dv-note input").fill("look here")
        member.keyboard.press("Enter")
        member.wait_for_function("() => window.viewer.status().annotations === 2")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        member.screenshot(path=str(SCREENSHOTS / "viewer-shared-annotations.png"))

        lead.reload()
        lead.wait_for_function("() => window.viewer && window.viewer.status().annotations === 2")
        arrow = lead.locator('.dv-annotation[data-kind="arrow"]')
        assert "look here" in arrow.inner_text() and "Dr Member" in arrow.inner_text()
        assert not lead.locator(".dv-message").is_visible()
        assert not errors, errors
    finally:
        lead_context.close()
        member_context.close()
    rows = ct_service.service.query(
        "SELECT action, object_id FROM audit_events WHERE action LIKE 'annotation.%' "
        "ORDER BY id")
    assert rows == [("annotation.add", str(panel.panel_id))] * 2
