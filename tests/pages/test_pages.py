"""The clinicians' and administrators' pages in Chromium, against the demo:
log in with a TOTP code, my panels, a panel with the CT in the viewer, a guest
kept out of a panel that is not theirs, the profile editor's dry run and
validation. Screenshots go to ``test-results/screenshots/``."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Locator, Response

from tests.pages.conftest import (
    CT_SLICES,
    SCREENSHOTS,
    BrowserThread,
    DemoSite,
    log_in,
    open_tab,
)

# share of the viewer's canvas that is not black, and its distinct grey levels
CANVAS_STATS = """() => {
  const c = document.querySelector("#viewer-host canvas.dv-canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  const levels = new Set();
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] || d[i + 1] || d[i + 2]) lit++;
    levels.add(d[i]);
  }
  return { lit: lit / (d.length / 4), levels: levels.size, width: c.width, height: c.height };
}"""


def edit(textarea: Locator, line: str, old: str, new: str) -> None:
    """Select ``old`` at the start of the first ``line`` of the textarea and type
    ``new`` over it, as a person would (filling the whole recipe anew is slow)."""
    textarea.evaluate("""(ta, [line, old]) => {
        const start = ta.value.indexOf(line);
        ta.focus();
        ta.setSelectionRange(start, start + old.length);
    }""", [line, old])
    textarea.page.keyboard.type(new)


def test_lead_opens_the_panel_and_reads_the_ct(chromium: BrowserThread,
                                               demo_site: DemoSite) -> None:
    def drive(browser: Browser) -> None:
        tab = open_tab(browser)
        page = tab.page
        try:
            log_in(tab, demo_site, "lead")
            review = page.locator(f'#panels tr[data-panel="{demo_site.review_panel}"]')
            assert review.locator(".badge.state").inner_text() == "open for review"
            assert review.locator(".role").inner_text() == "lead"
            draft = page.locator(f'#panels tr[data-panel="{demo_site.draft_panel}"]')
            assert draft.locator(".badge.urgent").inner_text() == "urgent"
            assert draft.locator(".badge.state").inner_text() == "draft"
            assert page.locator("#new-card").is_visible()  # a clinician opens panels
            assert page.get_by_label("Patient (enrolment of your centre)") \
                .locator("option").count() == 4

            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "panels.png"), full_page=True)
            review.get_by_role("link").click()
            page.wait_for_url(re.compile(rf"/app/panel\.html\?id={demo_site.review_panel}$"))
            page.wait_for_selector("body[data-ready]")
            assert re.fullmatch(r"ERN-[A-Z0-9]+", page.locator("#pseudonym").inner_text())
            assert page.locator("#consent").inner_text().startswith(
                "Consent for care: active")
            moves = page.locator("#transitions button")
            assert sorted(moves.evaluate_all("bs => bs.map(b => b.dataset.to)")) == \
                ["meeting", "outcome"]
            accepted = page.locator('#members tr[data-status="accepted"] td:first-child')
            assert sorted(accepted.all_inner_texts()) == ["Dr Jonas Lindqvist",
                                                          "Dr Marta Ferrer"]
            assert page.locator("#candidate option").count() >= 1  # the lead invites
            kinds = page.locator("#contributions li").evaluate_all(
                "items => items.map(i => i.dataset.kind)")
            assert sorted(kinds) == ["contribution", "contribution", "info_request"]
            assert page.locator("#studies tr.shared").count() == 1

            # the viewer shows the shared CT: open its axial series
            page.wait_for_function("() => window.panelViewer && "
                                   "window.panelViewer.status().shown", timeout=30_000)
            page.locator("#viewer-host .dv-series-item",
                         has_text=f"{CT_SLICES} images").click()
            page.wait_for_function("n => window.panelViewer.status().count === n && "
                                   "window.panelViewer.status().shown", arg=CT_SLICES,
                                   timeout=30_000)
            page.wait_for_function(f"() => ({CANVAS_STATS})().lit > 0.05", timeout=30_000)
            stats = page.evaluate(CANVAS_STATS)
            assert stats["width"] > 100 and stats["height"] > 100, stats
            assert stats["lit"] > 0.05 and stats["levels"] > 16, stats

            # the lead writes a contribution, then edits it
            page.get_by_label("Text").fill("Agree: embolise the largest feeder first.")
            page.get_by_role("button", name="Post").click()
            mine = page.locator("#contributions li", has_text="(you)")
            mine.wait_for()
            mine.get_by_role("button", name="Edit this contribution").click()
            mine.locator("textarea").fill("Agree: embolise the two largest feeders.")
            mine.get_by_role("button", name="Save").click()
            page.locator("#contributions li", has_text="two largest feeders").wait_for()
            assert page.locator("#contributions li").count() == 4

            page.wait_for_function("() => window.panelViewer.status().shown")
            page.screenshot(path=str(SCREENSHOTS / "panel.png"), full_page=True)

            # a new draft panel through the form; the lead shares a study with it
            page.get_by_role("link", name="My panels").click()
            page.wait_for_selector("body[data-ready]")
            area = "PAD · Paediatric and Rare Arterial Diseases"
            page.get_by_label("Thematic area").select_option(label=area)
            page.get_by_label("Clinical question (never the patient's name)").fill(
                "Aortic ectasia at follow-up?")
            page.get_by_role("button", name="Create the draft panel").click()
            page.wait_for_url(re.compile(r"/app/panel\.html\?id=\d+$"))
            page.wait_for_selector("body[data-ready]")
            assert page.locator("#state").inner_text() == "draft"
            assert page.locator("#transitions button").evaluate_all(
                "bs => bs.map(b => b.dataset.to)") == ["inviting"]
            assert page.locator("#studies tr.shared").count() == 0
            page.locator("#studies tbody tr").first.get_by_role("checkbox").check()
            page.locator("#studies tr.shared").wait_for()
            assert page.locator("#notice").inner_text() == "The study is shared with the panel."
            assert not page.locator("#viewer-host").is_visible()  # no images in a draft
            # the expert group: only who chose the panel's thematic area is invited
            page.get_by_label("Invite a whole expert group").select_option(
                label="Pulmonary AVM experts (3)")
            page.get_by_role("button", name="Invite the group").click()
            page.locator('#members tr[data-status="invited"]').wait_for()
            assert page.locator("#notice").inner_text() == "1 invited, 2 not invited."
            assert page.locator('#members tr[data-status="invited"] td').first.inner_text() \
                == "Dr Marta Ferrer"
            assert page.locator("#skipped li").all_inner_texts() == [
                f"Person #{i} not invited: the person has not chosen the panel's thematic area"
                for i in sorted(demo_site.user_ids[u] for u in ("lindqvist", "coordinator"))]

            # the life cycle, and the server's refusals shown as they are
            for to, shown in (("inviting", "inviting"), ("review", "open for review"),
                              ("outcome", "outcome")):
                page.locator(f'#transitions button[data-to="{to}"]').click()
                page.locator("#state", has_text=shown).wait_for()
            page.locator('#transitions button[data-to="closed"]').click()
            assert page.get_by_role("alert").inner_text() == \
                "cannot close: the lead has not written the outcome"
            page.get_by_label("Outcome: findings, recommendations, treatment plan").fill(
                "Watchful waiting; MR angiography in 12 months.")
            page.get_by_role("button", name="Save the outcome").click()
            page.locator("#outcome", has_text="Watchful waiting").wait_for()
            page.locator('#transitions button[data-to="closed"]').click()
            assert page.get_by_role("alert").inner_text() == \
                "cannot close: 0 of the 2 contributions this panel needs in the current round"
            assert page.locator("#state").inner_text() == "outcome"
            assert not tab.errors, tab.errors
        finally:
            tab.context.close()

    chromium.run(drive)


def test_a_guest_cannot_open_another_panel(chromium: BrowserThread,
                                           demo_site: DemoSite) -> None:
    def drive(browser: Browser) -> None:
        tab = open_tab(browser)
        page = tab.page
        try:
            log_in(tab, demo_site, "guest")
            invitation = page.locator(f'#invitations li[data-panel="{demo_site.review_panel}"]')
            assert invitation.get_by_role("button", name=re.compile("^Decline")).is_visible()
            assert page.locator("#panels tbody tr").count() == 1
            assert not page.locator("#new-card").is_visible()  # a guest opens no panel

            with page.expect_response(
                    lambda r: r.url.endswith(f"/api/panels/{demo_site.draft_panel}")) as answer:
                page.goto(f"{demo_site.url}/app/panel.html?id={demo_site.draft_panel}")
            response: Response = answer.value
            assert response.status == 404
            assert response.headers["content-type"] == "application/problem+json"
            page.get_by_role("heading", name="Panel not found").wait_for()
            assert not page.locator("#panel").is_visible()
            assert page.locator("#pseudonym").count() == 0 or \
                page.locator("#pseudonym").inner_text() == ""

            # the invited panel: metadata only, until the invitation is accepted
            page.goto(f"{demo_site.url}/app/panel.html?id={demo_site.review_panel}")
            page.wait_for_selector("body[data-ready]")
            assert page.locator("#studies-note").inner_text() == \
                "Accept the invitation to see the images."
            assert not page.locator("#viewer-host").is_visible()
            assert not page.locator("#contrib-card").is_visible()
            page.get_by_role("button", name="Accept the invitation").click()
            page.wait_for_function("() => window.panelViewer && "
                                   "window.panelViewer.status().shown", timeout=30_000)
            assert page.locator("#contrib-form").is_visible()
            assert not tab.errors, tab.errors
        finally:
            tab.context.close()

    chromium.run(drive)


def test_the_administrator_dry_runs_an_edited_recipe(chromium: BrowserThread,
                                                     demo_site: DemoSite) -> None:
    def drive(browser: Browser) -> None:
        tab = open_tab(browser)
        page = tab.page
        try:
            log_in(tab, demo_site, "admin")
            page.get_by_role("link", name="De-identification profiles").click()
            page.wait_for_url(f"{demo_site.url}/app/profiles.html")
            page.get_by_label("Profile", exact=True).select_option("basic")
            page.wait_for_function(
                "() => document.querySelector('#profile-facts').textContent.includes('version')")
            page.get_by_label("Recipe file", exact=True).select_option("basic.dicom")
            page.get_by_label("Sample instance", exact=True).select_option("ct")
            page.get_by_label("Show only elements that change").uncheck()
            row = page.locator('#diff tr[data-keyword="StudyDescription"]')

            # the saved recipe removes the study description
            page.get_by_role("button", name="Dry run (with the edited recipe)").click()
            row.wait_for()
            assert row.locator("td").nth(1).inner_text() == "removed"

            recipe = page.locator("#recipe")
            rule_line = recipe.input_value().split("\n").index("REMOVE (0008,1030)") + 1
            edit(recipe, "REMOVE (0008,1030)", "REMOVE", "KEEP")
            with page.expect_response(lambda r: "/draft-dry-run" in r.url) as answer:
                page.get_by_role("button", name="Dry run (with the edited recipe)").click()
            assert answer.value.status == 200
            page.wait_for_function(
                "() => document.querySelector('#dry-summary').textContent"
                ".startsWith('Edited recipe')")
            assert row.locator("td").nth(1).inner_text() == "kept"
            assert row.is_visible()
            assert row.locator("td").nth(4).inner_text() == f"basic.dicom:{rule_line}"

            # a bad line is named and marked in the gutter
            edit(recipe, "KEEP (0008,1030)", "KEEP", "FROBNICATE")
            page.get_by_role("button", name="Check the recipe").click()
            problem = page.locator("#problems li").first
            problem.wait_for()
            assert problem.inner_text().startswith(f"line {rule_line}: ")
            assert page.locator("#gutter .bad").all_inner_texts() == [str(rule_line)]
            assert not page.locator("#valid").is_visible()
            problem.get_by_role("link").click()  # goes to the line
            assert recipe.evaluate("ta => ta.value.slice(ta.selectionStart, ta.selectionEnd)") \
                == "FROBNICATE (0008,1030)"

            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "profile.png"), full_page=True)
            assert not tab.errors, tab.errors
        finally:
            tab.context.close()

    chromium.run(drive)
