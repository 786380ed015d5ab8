"""Who may do what on a panel: invitations by thematic area, guests' expiry,
contributions until the outcome, the minimum for closing, restarts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from dicom_service.care.access import panel_view
from dicom_service.db.models import AuditEvent, UserRole, utcnow
from dicom_service.errors import Conflict, Forbidden, NotFound
from tests.panels.conftest import World


@pytest.mark.parametrize(("name", "reason"), [
    ("no_area", "has chosen no thematic area and cannot be invited"),
    ("other_area", "has not chosen the panel's thematic area"),
    ("researcher", "holds no valid role in the panel's network that takes part in panels"),
    ("outsider", "holds no valid role in the panel's network"),
    ("admin", "holds no valid role in the panel's network"),
    ("lead", "the lead is a member of the panel already"),
])
def test_who_cannot_be_invited(world: World, name: str, reason: str) -> None:
    panel_id = world.new_panel()
    with pytest.raises(Conflict, match=f"cannot invite: .*{reason}"):
        world.panels.invite(world.person("lead"), panel_id, world.users[name],
                            actor=world.actor("lead"))
    members = world.panels.members(world.person("lead"), panel_id)
    assert [m.user_id for m in members] == []
    with world.services.db.session() as s:  # the refusal is audited
        refused = s.scalars(select(AuditEvent.result).where(
            AuditEvent.action == "panel.invite", AuditEvent.object_id == str(panel_id))).all()
    assert refused == ["conflict"]


def test_candidates_are_filtered_by_thematic_area(world: World) -> None:
    panel_id = world.new_panel()
    names = {n for _, n in world.panels.candidates(world.person("lead"), panel_id)}
    assert names == {"Colleague", "Expert1", "Expert2", "Expert3", "Guest"}
    world.move(panel_id, "inviting")
    world.member(panel_id, "expert1")
    names = {n for _, n in world.panels.candidates(world.person("lead"), panel_id)}
    assert "Expert1" not in names
    with pytest.raises(Forbidden):
        world.panels.candidates(world.person("coordinator"), panel_id)


def test_invite_accept_decline_and_reinvite(world: World) -> None:
    lead = world.person("lead")
    panel_id = world.new_panel()
    world.panels.invite(lead, panel_id, world.users["expert1"], actor="t")
    with pytest.raises(Conflict, match="invited already"):
        world.panels.invite(lead, panel_id, world.users["expert1"], actor="t")
    # invisible to the invitee while a draft
    with pytest.raises(NotFound):
        world.panels.respond(world.person("expert1"), panel_id, True, actor="t")
    world.move(panel_id, "inviting")
    world.panels.invite(lead, panel_id, world.users["expert2"], actor="t")
    assert world.panels.get(world.person("expert1"), panel_id, actor="t").membership == "invited"
    world.panels.respond(world.person("expert1"), panel_id, True, actor="t")
    world.panels.respond(world.person("expert2"), panel_id, False, actor="t")
    with pytest.raises(Conflict, match="answered already"):
        world.panels.respond(world.person("expert1"), panel_id, False, actor="t")
    with pytest.raises(Forbidden, match="only an invited person"):
        world.panels.respond(world.person("coordinator"), panel_id, True, actor="t")
    # a decliner no longer sees the panel; a new invitation brings it back
    with pytest.raises(NotFound):
        world.panels.get(world.person("expert2"), panel_id, actor="t")
    world.panels.invite(lead, panel_id, world.users["expert2"], actor="t")
    assert {(m.display_name, m.status) for m in world.panels.members(lead, panel_id)} == {
        ("Expert1", "accepted"), ("Expert2", "invited")}
    # only the lead invites
    with pytest.raises(Forbidden, match="only the panel's lead may invite"):
        world.panels.invite(world.person("expert1"), panel_id, world.users["expert3"],
                            actor="t")


def test_invite_a_whole_expert_group(world: World) -> None:
    group = world.org.add_group(world.network_id, "Vascular core", world.areas["VASCA"],
                                by=None)
    for name in ("expert1", "expert3", "no_area", "other_area", "coordinator"):
        world.org.add_group_member(group, world.users[name], by=None)
    with pytest.raises(Conflict, match="valid role in the group's network"):
        world.org.add_group_member(group, world.users["outsider"], by=None)
    panel_id = world.new_panel()
    world.move(panel_id, "inviting")
    done = world.panels.invite_group(world.person("lead"), panel_id, group, actor="t")
    assert set(done.invited) == {world.users["expert1"], world.users["expert3"]}
    assert dict(done.skipped) == {
        world.users["no_area"]: "the person has chosen no thematic area and cannot be invited",
        world.users["other_area"]: "the person has not chosen the panel's thematic area",
        world.users["coordinator"]:
            "the person has chosen no thematic area and cannot be invited"}
    with pytest.raises(NotFound, match="no such expert group"):
        world.panels.invite_group(world.person("lead"), panel_id, group + 99, actor="t")


def test_expired_guest_sees_nothing(world: World) -> None:
    panel_id = world.new_panel()
    world.move(panel_id, "inviting")
    world.member(panel_id, "guest")
    with world.services.db.engine.connect() as conn:
        view = panel_view(conn, world.person("guest"), panel_id)
    assert view is not None and view.images and view.membership == "accepted"
    with world.services.db.session() as s:  # 90 days have passed
        expiry = s.scalar(select(UserRole.expires_at).where(
            UserRole.user_id == world.users["guest"]))
        assert expiry is not None
        s.execute(update(UserRole).where(UserRole.user_id == world.users["guest"])
                  .values(expires_at=utcnow() - timedelta(minutes=1)))
    guest = world.person("guest")
    assert guest.roles == frozenset()
    with world.services.db.engine.connect() as conn:
        assert panel_view(conn, guest, panel_id) is None
    with pytest.raises(NotFound):
        world.panels.get(guest, panel_id, actor="t")
    assert world.panels.list_mine(guest) == []
    with pytest.raises(NotFound):
        world.panels.add_contribution(guest, panel_id, "late", actor="t")
    # the coordinator extends the guest: visible again
    world.org.extend_role(world.users["guest"], world.network_id, "guest",
                          by=world.person("coordinator"))
    assert world.panels.get(world.person("guest"), panel_id, actor="t").images


def test_contributions_are_editable_until_the_outcome(world: World) -> None:
    panel_id = world.new_panel()
    with pytest.raises(Conflict, match="cannot contribute in state draft"):
        world.contribute(panel_id, "lead")
    world.move(panel_id, "inviting")
    world.member(panel_id, "expert1")
    world.panels.invite(world.person("lead"), panel_id, world.users["expert2"], actor="t")
    with pytest.raises(Forbidden, match="only the lead and accepted members"):
        world.contribute(panel_id, "expert2")  # invited, not yet accepted
    with pytest.raises(Forbidden):
        world.contribute(panel_id, "coordinator")
    world.move(panel_id, "review")
    mine = world.contribute(panel_id, "expert1", "First thoughts.")
    question = world.panels.add_contribution(world.person("expert1"), panel_id,
                                             "Is there an MRI?", kind="info_request",
                                             actor="t")
    world.panels.edit_contribution(world.person("expert1"), panel_id, mine, "Revised.",
                                   actor="t")
    with pytest.raises(Forbidden, match="only its author"):
        world.panels.edit_contribution(world.person("lead"), panel_id, mine, "Not mine.",
                                       actor="t")
    world.move(panel_id, "meeting")
    world.panels.delete_contribution(world.person("expert1"), panel_id, question, actor="t")
    world.move(panel_id, "outcome")
    with pytest.raises(Conflict, match="cannot edit a contribution in state outcome"):
        world.panels.edit_contribution(world.person("expert1"), panel_id, mine, "Too late.",
                                       actor="t")
    with pytest.raises(Conflict, match="cannot delete a contribution in state outcome"):
        world.panels.delete_contribution(world.person("expert1"), panel_id, mine, actor="t")
    with pytest.raises(Conflict, match="cannot contribute in state outcome"):
        world.contribute(panel_id, "expert1")
    listed = world.panels.contributions(world.person("lead"), panel_id, actor="t")
    assert [(c.body, c.kind, c.round) for c in listed] == [("Revised.", "contribution", 1)]
    with pytest.raises(Forbidden, match="read the contributions"):
        world.panels.contributions(world.person("coordinator"), panel_id, actor="t")
    # a coordinator sees the metadata, never the outcome or the rounds
    seen = world.panels.get(world.person("coordinator"), panel_id, actor="t")
    assert seen.outcome is None and seen.rounds is None and not seen.images


def test_closing_needs_the_minimum_of_contributions(world: World) -> None:
    panel_id = world.new_panel()  # min_contributions=2
    world.move(panel_id, "inviting")
    for name in ("expert1", "expert2"):
        world.member(panel_id, name)
    world.move(panel_id, "review")
    world.contribute(panel_id, "expert1")
    world.contribute(panel_id, "expert1", "And another thought.")  # same author: one
    world.panels.add_contribution(world.person("expert2"), panel_id, "Need labs.",
                                  kind="info_request", actor="t")  # not a contribution
    world.move(panel_id, "outcome")
    with pytest.raises(Conflict, match="the lead has not written the outcome"):
        world.move(panel_id, "closed")
    with pytest.raises(Forbidden, match="only the panel's lead may write the outcome"):
        world.panels.write_outcome(world.person("expert1"), panel_id, "No.", actor="t")
    world.panels.write_outcome(world.person("lead"), panel_id, "Sirolimus.", actor="t")
    with pytest.raises(Conflict, match="cannot close: 1 of the 2 contributions"):
        world.move(panel_id, "closed")
    assert world.panels.get(world.person("lead"), panel_id, actor="t").state == "outcome"


@pytest.mark.parametrize("minimum", [0, 1, 3])
def test_the_minimum_is_configurable(world: World, minimum: int) -> None:
    panel_id = world.new_panel(min_contributions=minimum)
    world.move(panel_id, "inviting")
    for name in ("expert1", "expert2", "expert3"):
        world.member(panel_id, name)
    world.move(panel_id, "review")
    for name in ("expert1", "expert2", "expert3")[:minimum]:
        world.contribute(panel_id, name)
    world.move(panel_id, "outcome")
    world.panels.write_outcome(world.person("lead"), panel_id, "Done.", actor="t")
    world.move(panel_id, "closed")
    assert world.panels.get(world.person("lead"), panel_id, actor="t").closed_at is not None


@pytest.mark.parametrize("minimum", [-1, 11])
def test_the_minimum_is_bounded(world: World, minimum: int) -> None:
    with pytest.raises(ValueError, match="min_contributions"):
        world.new_panel(min_contributions=minimum)


def test_restart_keeps_the_history(world: World) -> None:
    lead = world.person("lead")
    panel_id = world.new_panel(min_contributions=1)
    world.move(panel_id, "inviting")
    world.member(panel_id, "expert1")
    world.move(panel_id, "review")
    first = world.contribute(panel_id, "expert1", "Round one opinion.")
    world.move(panel_id, "outcome")
    world.panels.write_outcome(lead, panel_id, "Round one outcome.", actor="t")
    world.move(panel_id, "closed")
    detail = world.panels.restart(lead, panel_id, to="inviting", reason="New MRI arrived.",
                                  actor="t")
    assert (detail.state, detail.round, detail.outcome, detail.closed_at) == (
        "inviting", 2, None, None)
    assert detail.rounds is not None
    assert [(r.number, r.outcome, r.restart_reason, r.closed_at is not None)
            for r in detail.rounds] == [(1, "Round one outcome.", None, True),
                                        (2, None, "New MRI arrived.", False)]
    # round one's contribution stays with round one and is frozen
    with pytest.raises(Conflict, match="earlier round"):
        world.panels.edit_contribution(world.person("expert1"), panel_id, first, "Changed.",
                                       actor="t")
    world.move(panel_id, "review", "outcome")
    world.panels.write_outcome(lead, panel_id, "Round two outcome.", actor="t")
    with pytest.raises(Conflict, match="cannot close: 0 of the 1"):  # round one's do not count
        world.move(panel_id, "closed")
    assert world.panels.get(lead, panel_id, actor="t").state == "outcome"
    listed = world.panels.contributions(lead, panel_id, actor="t")
    assert [(c.id, c.round, c.body) for c in listed] == [(first, 1, "Round one opinion.")]


def test_restart_needs_consent_for_care(world: World) -> None:
    panel_id = world.new_panel(min_contributions=0)
    world.move(panel_id, "inviting", "review", "outcome")
    world.panels.write_outcome(world.person("lead"), panel_id, "Done.", actor="t")
    world.move(panel_id, "closed")
    world.services.care.change_consent(world.person("lead"), world.pseudonym, "care", False,
                                       actor=world.actor("lead"))
    with pytest.raises(Conflict, match="consent for care was withdrawn"):
        world.panels.restart(world.person("lead"), panel_id, actor="t")


def test_archived_panels_are_the_leads_alone(world: World) -> None:
    panel_id = world.new_panel(min_contributions=0)
    world.move(panel_id, "inviting")
    world.member(panel_id, "expert1")
    world.move(panel_id, "review", "outcome")
    world.panels.write_outcome(world.person("lead"), panel_id, "Done.", actor="t")
    world.move(panel_id, "closed")
    closed = world.panels.get(world.person("expert1"), panel_id, actor="t")
    assert closed.images and closed.outcome == "Done."  # read-only after closing
    world.move(panel_id, "archived")
    with pytest.raises(NotFound):
        world.panels.get(world.person("expert1"), panel_id, actor="t")
    assert not world.panels.get(world.person("lead"), panel_id, actor="t").images


def test_my_panels(world: World) -> None:
    led = world.new_panel(title="Led")
    world.move(led, "inviting")
    world.panels.invite(world.person("lead"), led, world.users["expert1"], actor="t")
    draft = world.new_panel(title="Draft")
    world.panels.invite(world.person("lead"), draft, world.users["expert2"], actor="t")
    titles = {p.title: (p.is_lead, p.membership)
              for p in world.panels.list_mine(world.person("lead"))}
    assert titles == {"Led": (True, None), "Draft": (True, None)}
    assert [(p.title, p.membership) for p in world.panels.list_mine(
        world.person("expert1"))] == [("Led", "invited")]
    assert world.panels.list_mine(world.person("expert2")) == []  # a draft's invitee
    assert {p.title for p in world.panels.list_mine(world.person("coordinator"))} == {
        "Led", "Draft"}
    for name in ("admin", "researcher", "outsider"):
        assert world.panels.list_mine(world.person(name)) == []


def test_panels_are_opened_by_clinicians_of_the_patients_centre(world: World) -> None:
    with pytest.raises(NotFound, match="no such enrolment"):  # another centre's patient
        world.panels.create(world.person("expert1"), pseudonym=world.pseudonym,
                            network_id=world.network_id, area_id=world.areas["VASCA"],
                            title="Mine?", actor="t")
    for name in ("coordinator", "researcher", "admin", "guest"):
        with pytest.raises(Forbidden, match="only health professionals"):
            world.panels.create(world.person(name), pseudonym=world.pseudonym,
                                network_id=world.network_id, area_id=world.areas["VASCA"],
                                title="Mine?", actor="t")
    other = world.org.add_network("ERN-OTHER", by=None)
    with pytest.raises(Forbidden):  # the lead holds no role there
        world.panels.create(world.person("lead"), pseudonym=world.pseudonym,
                            network_id=other, area_id=world.areas["VASCA"], title="X",
                            actor="t")
    world.org.grant_role(world.users["lead"], other, "health_professional", by=None)
    with pytest.raises(Conflict, match="centre is not a member of this network"):
        world.panels.create(world.person("lead"), pseudonym=world.pseudonym,
                            network_id=other, area_id=world.areas["VASCA"], title="X",
                            actor="t")


def test_invitations_are_answered_only_while_the_panel_is_active(world: World) -> None:
    # a coordinator sees a draft of their network (metadata) and so their
    # invitation to it; they answer it only once the panel invites
    world.org.set_preferences(world.users["coordinator"], [world.areas["VASCA"]], by=None)
    panel_id = world.new_panel()
    world.panels.invite(world.person("lead"), panel_id, world.users["coordinator"], actor="t")
    with pytest.raises(Conflict, match="cannot answer an invitation in state draft"):
        world.panels.respond(world.person("coordinator"), panel_id, True, actor="t")
    world.move(panel_id, "inviting")
    world.panels.respond(world.person("coordinator"), panel_id, True, actor="t")
    seen = world.panels.get(world.person("coordinator"), panel_id, actor="t")
    assert (seen.membership, seen.images) == ("accepted", True)  # a member now
