"""Expert panels: the life cycle as an explicit transition table, and who may do what.

Life cycle (:data:`TRANSITIONS`)::

    draft -> inviting -> review -> (meeting ->) outcome -> closed -> archived
                           ^                                  |
                           +---- restart (new round) ---------+  (also to inviting)

There is no "cancel": a draft nobody was invited to carries nothing worth
keeping, and anything later ends as closed, with its history.

Who sees a panel is decided by :func:`dicom_service.care.access.panel_view`
alone (``None`` -> :class:`NotFound`). Who may *do* what, once they see it:

- the lead (the health professional or dispatcher of the patient's centre who
  created the panel) moves the state, chooses which of the enrolment's studies
  the panel shares, invites people one by one or a whole expert group, removes
  members, sets the urgent flag and writes the outcome (in state ``outcome``);
- an invitee accepts or declines;
- accepted members and the lead read the contributions, the outcome and the
  rounds, and write contributions and requests for information while the
  panel is inviting, in review or in a meeting; each author edits or deletes
  their own until the outcome (and only in the current round);
- coordinators of the panel's network, and clinicians of the patient's
  centre, see the panel's metadata only (read-only).

Anything else on a visible panel is :class:`Forbidden` (403); an action the
state does not allow is :class:`Conflict` (409) naming the states.

Only people who chose the panel's thematic area and hold a valid role in the
panel's network that takes part in panels (health professional, coordinator,
dispatcher, guest; researchers do not) can be invited. Closing needs at least
``min_contributions`` contributions (by distinct authors, kind
``contribution``) in the current round and a written outcome.

Every change and every refusal is audited by panel ID and internal IDs.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from dicom_service.care import audit
from dicom_service.care.access import (
    ACTIVE_STATES,
    STATES,
    PanelView,
    Person,
    load_person,
    panel_view,
)
from dicom_service.db.models import (
    CentreNetwork,
    Contribution,
    Enrolment,
    ExpertGroup,
    ExpertGroupMember,
    Panel,
    PanelMember,
    PanelRound,
    PanelStudy,
    Study,
    ThematicArea,
    User,
    UserThematicArea,
    utcnow,
)
from dicom_service.db.session import Database
from dicom_service.dicom.uids import validate_uid
from dicom_service.errors import Conflict, Forbidden, NotFound

# (from, to) -> the move's name. Anything not here is refused.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("draft", "inviting"): "open",
    ("inviting", "review"): "start-review",
    ("review", "meeting"): "meeting",
    ("review", "outcome"): "outcome",
    ("meeting", "outcome"): "outcome",
    ("outcome", "closed"): "close",
    ("closed", "archived"): "archive",
    ("closed", "inviting"): "restart",
    ("closed", "review"): "restart",
}
# states in which members write and edit contributions (until the outcome)
CONTRIBUTION_STATES = frozenset({"inviting", "review", "meeting"})
# states in which the lead invites
INVITE_STATES = frozenset({"draft", "inviting", "review", "meeting"})
# states in which the lead changes shared studies, members and the urgent flag
PREPARE_STATES = frozenset({"draft"}) | ACTIVE_STATES
# roles that take part in panels (researchers see aggregated figures only)
PANEL_ROLES = frozenset({"health_professional", "coordinator", "dispatcher", "guest"})
LEAD_ROLES = ("health_professional", "dispatcher")
KINDS = ("contribution", "info_request")
MAX_MIN_CONTRIBUTIONS = 10
MAX_TEXT = 20_000
_REFUSAL_RESULT = {NotFound: "not-found", Forbidden: "forbidden", Conflict: "conflict"}


@dataclass(frozen=True)
class PanelSummary:
    id: int
    title: str
    state: str
    round: int
    urgent: bool
    network_id: int
    pseudonym: str
    is_lead: bool
    membership: str | None
    updated_at: datetime


@dataclass(frozen=True)
class RoundInfo:
    number: int
    opened_at: datetime
    outcome: str | None
    closed_at: datetime | None
    restart_reason: str | None


@dataclass(frozen=True)
class PanelDetail:
    id: int
    title: str
    state: str
    round: int
    urgent: bool
    network_id: int
    area_id: int
    area_code: str
    pseudonym: str
    lead_user_id: int
    lead_name: str
    # consent for care of the panel's patient (its withdrawal closes the panel)
    consent_care: bool
    min_contributions: int
    created_at: datetime
    closed_at: datetime | None
    archived_at: datetime | None
    studies: tuple[str, ...]
    # the caller's view
    is_lead: bool
    membership: str | None
    images: bool
    # states the lead may move to now
    next_states: tuple[str, ...]
    # for the lead and accepted members only (None for metadata viewers)
    outcome: str | None
    rounds: tuple[RoundInfo, ...] | None


@dataclass(frozen=True)
class MemberInfo:
    user_id: int
    display_name: str
    status: str
    invited_at: datetime
    responded_at: datetime | None


@dataclass(frozen=True)
class ContributionInfo:
    id: int
    round: int
    author_id: int
    kind: str
    body: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class GroupInvitation:
    invited: tuple[int, ...]
    # (user ID, why not invited)
    skipped: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class NetworkStats:
    network_id: int
    panels_per_state: dict[str, int]
    closed_rounds: int
    median_days_to_closure: float | None
    median_contributions_per_panel: float | None
    mean_contributions_per_panel: float | None


def validate_title(value: str) -> str:
    if not value.strip() or len(value) > 200 or any(ord(c) < 32 for c in value):
        raise ValueError("title must be 1-200 printable characters")
    return value


def validate_text(value: str, what: str) -> str:
    if not value.strip() or len(value) > MAX_TEXT:
        raise ValueError(f"{what} must be 1-{MAX_TEXT} characters")
    return value


def refuse_transition(current: str, to: str) -> Conflict:
    return Conflict(f"cannot go from {current} to {to}")


def _view(s: Session, person: Person, panel_id: int) -> PanelView:
    view = panel_view(s.connection(), person, panel_id)
    if view is None:
        raise NotFound("no such panel")
    return view


def _panel(s: Session, panel_id: int, *, lock: bool = False) -> Panel:
    # ``lock``: a change that depends on the state holds the row (PostgreSQL;
    # SQLite serialises writers anyway)
    panel = s.get(Panel, panel_id, with_for_update=lock)
    if panel is None:  # pragma: no cover - panel_view found it in this transaction
        raise NotFound("no such panel")
    return panel


def _participant(view: PanelView) -> bool:
    # panel_view returns a view with membership "accepted" only while the member
    # holds a valid role in the panel's network
    return view.is_lead or view.membership == "accepted"


def _require_lead(view: PanelView, what: str) -> None:
    if not view.is_lead:
        raise Forbidden(f"only the panel's lead may {what}")


def _require_state(state: str, allowed: frozenset[str], what: str) -> None:
    if state not in allowed:
        ordered = ", ".join(s for s in STATES if s in allowed)
        raise Conflict(f"cannot {what} in state {state} (only in: {ordered})")


def ineligibility(s: Session, panel: Panel, user_id: int) -> str | None:
    """Why ``user_id`` cannot be invited to ``panel`` (``None``: they can)."""
    if user_id == panel.lead_user_id:
        return "the lead is a member of the panel already"
    person = load_person(s.connection(), user_id)
    if person is None:
        return "the person does not exist or is disabled"
    if not any(person.has_role(r, panel.network_id) for r in PANEL_ROLES):
        return "the person holds no valid role in the panel's network that takes part in panels"
    areas = set(s.scalars(select(UserThematicArea.area_id)
                          .where(UserThematicArea.user_id == user_id)))
    if not areas:
        return "the person has chosen no thematic area and cannot be invited"
    if panel.area_id not in areas:
        return "the person has not chosen the panel's thematic area"
    status = s.scalar(select(PanelMember.status).where(PanelMember.panel_id == panel.id,
                                                       PanelMember.user_id == user_id))
    if status == "invited":
        return "the person is invited already"
    if status == "accepted":
        return "the person is a member already"
    return None


class PanelService:
    """Every panel operation; each takes the calling person and the audit actor."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def _tx(self, actor: str, action: str, panel_id: int | None) -> Iterator[Session]:
        """A transaction whose refusal is audited too (in its own transaction,
        since the refused one rolls back)."""
        try:
            with self.db.session() as s:
                yield s
        except (NotFound, Forbidden, Conflict) as exc:
            result = next(v for k, v in _REFUSAL_RESULT.items() if isinstance(exc, k))
            with self.db.session() as s:
                audit.record(s, actor=actor, action=action, object_type="panel",
                             object_id=str(panel_id) if panel_id is not None else "-",
                             result=result, detail=str(exc)[:200])
            raise

    # -- creating and reading ----------------------------------------------------
    def create(self, person: Person, *, pseudonym: str, network_id: int, area_id: int,
               title: str, urgent: bool = False, min_contributions: int = 2,
               actor: str) -> int:
        """A clinician of the patient's centre opens a draft panel and leads it."""
        validate_title(title)
        if not 0 <= min_contributions <= MAX_MIN_CONTRIBUTIONS:
            raise ValueError(f'"min_contributions" must be between 0 and '
                             f"{MAX_MIN_CONTRIBUTIONS}")
        with self._tx(actor, "panel.create", None) as s:
            if person.centre_id is None or not any(person.has_role(r, network_id)
                                                   for r in LEAD_ROLES):
                raise Forbidden("only health professionals of the network open panels")
            enrolment = s.execute(select(Enrolment.id, Enrolment.centre_id,
                                         Enrolment.consent_care)
                                  .where(Enrolment.pseudonym == pseudonym)).first()
            if enrolment is None or enrolment.centre_id != person.centre_id:
                raise NotFound("no such enrolment")
            if not enrolment.consent_care:
                raise Conflict("consent for care is not active for this enrolment")
            if s.get(CentreNetwork, (person.centre_id, network_id)) is None:
                raise Conflict("the patient's centre is not a member of this network")
            if s.scalar(select(ThematicArea.network_id)
                        .where(ThematicArea.id == area_id)) != network_id:
                raise NotFound("no such thematic area in this network")
            panel = Panel(network_id=network_id, enrolment_id=enrolment.id, area_id=area_id,
                          lead_user_id=person.user_id, title=title, urgent=urgent,
                          state="draft", round=1, min_contributions=min_contributions)
            s.add(panel)
            s.flush()
            s.add(PanelRound(panel_id=panel.id, number=1))
            audit.record(s, actor=actor, action="panel.create", object_type="panel",
                         object_id=str(panel.id),
                         detail=f"network={network_id} area={area_id} urgent={urgent}")
            return panel.id

    def get(self, person: Person, panel_id: int, *, actor: str) -> PanelDetail:
        with self._tx(actor, "panel.read", panel_id) as s:
            view = _view(s, person, panel_id)
            detail = self._detail(s, view)
            audit.record(s, actor=actor, action="panel.read", object_type="panel",
                         object_id=str(panel_id))
            return detail

    def _detail(self, s: Session, view: PanelView) -> PanelDetail:
        p = _panel(s, view.panel_id)
        pseudonym, consent_care = s.execute(
            select(Enrolment.pseudonym, Enrolment.consent_care)
            .where(Enrolment.id == p.enrolment_id)).one()
        lead_name = s.scalar(select(User.display_name).where(User.id == p.lead_user_id))
        code = s.scalar(select(ThematicArea.code).where(ThematicArea.id == p.area_id))
        studies = tuple(s.scalars(select(PanelStudy.study_uid)
                                  .where(PanelStudy.panel_id == p.id)
                                  .order_by(PanelStudy.study_uid)))
        content = _participant(view)
        rounds = None
        if content:
            rounds = tuple(RoundInfo(*r) for r in s.execute(
                select(PanelRound.number, PanelRound.opened_at, PanelRound.outcome,
                       PanelRound.closed_at, PanelRound.restart_reason)
                .where(PanelRound.panel_id == p.id).order_by(PanelRound.number)))
        next_states = tuple(to for (frm, to) in TRANSITIONS if frm == p.state) \
            if view.is_lead else ()
        return PanelDetail(
            id=p.id, title=p.title, state=p.state, round=p.round, urgent=p.urgent,
            network_id=p.network_id, area_id=p.area_id, area_code=code or "",
            pseudonym=pseudonym or "", lead_user_id=p.lead_user_id,
            lead_name=lead_name or "", consent_care=bool(consent_care),
            min_contributions=p.min_contributions, created_at=p.created_at,
            closed_at=p.closed_at, archived_at=p.archived_at, studies=studies,
            is_lead=view.is_lead, membership=view.membership, images=view.images,
            next_states=next_states, outcome=p.outcome if content else None, rounds=rounds)

    def list_mine(self, person: Person) -> list[PanelSummary]:
        """The panels the person leads, is a member of or is invited to, and for
        coordinators every panel of their networks (each as :func:`panel_view`
        allows)."""
        coordinated = sorted(n for n, r in person.roles if r == "coordinator")
        with self.db.session() as s:
            mine = select(PanelMember.panel_id).where(
                PanelMember.user_id == person.user_id,
                PanelMember.status.in_(("invited", "accepted")))
            rows = s.execute(
                select(Panel.id, Panel.title, Panel.state, Panel.round, Panel.urgent,
                       Panel.network_id, Enrolment.pseudonym, Panel.updated_at)
                .join(Enrolment, Enrolment.id == Panel.enrolment_id)
                .where(or_(Panel.lead_user_id == person.user_id, Panel.id.in_(mine),
                           Panel.network_id.in_(coordinated)))
                .order_by(Panel.urgent.desc(), Panel.updated_at.desc(), Panel.id)).all()
            out = []
            for r in rows:
                view = panel_view(s.connection(), person, r.id)
                if view is not None:
                    out.append(PanelSummary(r.id, r.title, view.state, r.round, r.urgent,
                                            r.network_id, r.pseudonym, view.is_lead,
                                            view.membership, r.updated_at))
        return out

    # -- the life cycle ----------------------------------------------------------
    def transition(self, person: Person, panel_id: int, to: str, *,
                   reason: str | None = None, actor: str) -> PanelDetail:
        """Move the panel to state ``to`` (the lead only); see :data:`TRANSITIONS`.

        ``closed -> inviting|review`` is a restart: a new round opens, the
        previous round keeps its outcome and contributions. ``reason`` is the
        restart's reason (ignored for other moves).
        """
        if to not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        if reason is not None:
            validate_text(reason, "reason")
        with self._tx(actor, "panel.transition", panel_id) as s:
            view = _view(s, person, panel_id)
            _require_lead(view, "change its state")
            panel = _panel(s, panel_id, lock=True)
            move = TRANSITIONS.get((panel.state, to))
            if move is None:
                raise refuse_transition(panel.state, to)
            now = utcnow()
            previous = panel.state
            if move == "close":
                self._check_closable(s, panel)
                panel.closed_at = now
                current = s.scalar(select(PanelRound).where(PanelRound.panel_id == panel.id,
                                                            PanelRound.number == panel.round))
                if current is not None:
                    current.outcome = panel.outcome
                    current.closed_at = now
            elif move == "archive":
                panel.archived_at = now
            elif move == "restart":
                consent = s.scalar(select(Enrolment.consent_care)
                                   .where(Enrolment.id == panel.enrolment_id))
                if not consent:
                    raise Conflict("cannot restart: consent for care was withdrawn")
                panel.round += 1
                panel.outcome = None
                panel.closed_at = None
                s.add(PanelRound(panel_id=panel.id, number=panel.round, restart_reason=reason))
            panel.state = to
            panel.updated_at = now
            audit.record(s, actor=actor, action=f"panel.{move}", object_type="panel",
                         object_id=str(panel_id),
                         detail=f"from={previous} to={to} round={panel.round}")
            s.flush()
            return self._detail(s, _view(s, person, panel_id))

    def restart(self, person: Person, panel_id: int, *, to: str = "review",
                reason: str | None = None, actor: str) -> PanelDetail:
        """Restart a closed panel into a new round (``to``: inviting or review)."""
        if to not in ("inviting", "review"):
            raise ValueError("a restart goes to inviting or review")
        return self.transition(person, panel_id, to, reason=reason, actor=actor)

    def _check_closable(self, s: Session, panel: Panel) -> None:
        if not panel.outcome:
            raise Conflict("cannot close: the lead has not written the outcome")
        authors = s.scalar(select(func.count(func.distinct(Contribution.author_id)))
                           .where(Contribution.panel_id == panel.id,
                                  Contribution.round == panel.round,
                                  Contribution.kind == "contribution")) or 0
        if authors < panel.min_contributions:
            raise Conflict(f"cannot close: {authors} of the {panel.min_contributions} "
                           "contributions this panel needs in the current round")

    def set_urgent(self, person: Person, panel_id: int, urgent: bool, *,
                   actor: str) -> None:
        with self._tx(actor, "panel.urgent", panel_id) as s:
            view = _view(s, person, panel_id)
            _require_lead(view, "flag it urgent")
            _require_state(view.state, PREPARE_STATES, "change the urgent flag")
            panel = _panel(s, panel_id)
            panel.urgent = urgent
            panel.updated_at = utcnow()
            audit.record(s, actor=actor, action="panel.urgent", object_type="panel",
                         object_id=str(panel_id), detail=f"urgent={urgent}")

    def write_outcome(self, person: Person, panel_id: int, text: str, *, actor: str) -> None:
        """The lead writes (or rewrites) the outcome while the panel is at the outcome."""
        validate_text(text, "outcome")
        with self._tx(actor, "panel.outcome", panel_id) as s:
            view = _view(s, person, panel_id)
            _require_lead(view, "write the outcome")
            _require_state(view.state, frozenset({"outcome"}), "write the outcome")
            panel = _panel(s, panel_id)
            panel.outcome = text
            panel.updated_at = utcnow()
            audit.record(s, actor=actor, action="panel.outcome", object_type="panel",
                         object_id=str(panel_id), detail=f"round={panel.round}")

    # -- shared studies ------------------------------------------------------------
    def share_study(self, person: Person, panel_id: int, study_uid: str, *,
                    actor: str) -> None:
        """Share one study of the panel's enrolment with the panel (the lead only)."""
        validate_uid(study_uid, "study UID")
        with self._tx(actor, "panel.share_study", panel_id) as s:
            view = _view(s, person, panel_id)
            _require_lead(view, "choose the shared studies")
            _require_state(view.state, PREPARE_STATES, "change the shared studies")
            panel = _panel(s, panel_id)
            if s.scalar(select(Study.enrolment_id)
                        .where(Study.study_uid == study_uid)) != panel.enrolment_id:
                raise NotFound("no such study of this panel's patient")
            if s.get(PanelStudy, (panel_id, study_uid)) is not None:
                raise Conflict("the study is shared with this panel already")
            s.add(PanelStudy(panel_id=panel_id, study_uid=study_uid))
            panel.updated_at = utcnow()
            audit.record(s, actor=actor, action="panel.share_study", object_type="panel",
                         object_id=str(panel_id), detail=f"study={study_uid}")

    def unshare_study(self, person: Person, panel_id: int, study_uid: str, *,
                      actor: str) -> None:
        with self._tx(actor, "panel.unshare_study", panel_id) as s:
            view = _view(s, person, panel_id)
            _require_lead(view, "choose the shared studies")
            _require_state(view.state, PREPARE_STATES, "change the shared studies")
            n = s.execute(delete(PanelStudy).where(
                PanelStudy.panel_id == panel_id,
                PanelStudy.study_uid == study_uid)).rowcount  # type: ignore[attr-defined]
            if not n:
                raise NotFound("the study is not shared with this panel")
            audit.record(s, actor=actor, action="panel.unshare_study", object_type="panel",
                         object_id=str(panel_id), detail=f"study={study_uid}")

    # -- members -------------------------------------------------------------------
    def candidates(self, person: Person, panel_id: int) -> list[tuple[int, str]]:
        """(user ID, display name) of everyone the lead could invite now: the
        people who chose the panel's thematic area, filtered by :func:`ineligibility`."""
        with self.db.session() as s:
            view = _view(s, person, panel_id)
            _require_lead(view, "see the candidates")
            panel = _panel(s, panel_id)
            rows = s.execute(select(User.id, User.display_name)
                             .join(UserThematicArea, UserThematicArea.user_id == User.id)
                             .where(UserThematicArea.area_id == panel.area_id)
                             .order_by(User.display_name, User.id)).all()
            return [(uid, name) for uid, name in rows if ineligibility(s, panel, uid) is None]

    def invite(self, person: Person, panel_id: int, user_id: int, *, actor: str) -> None:
        """The lead invites one person; :class:`Conflict` names why someone cannot be."""
        with self._tx(actor, "panel.invite", panel_id) as s:
            view = _view(s, person, panel_id)
            _require_lead(view, "invite")
            _require_state(view.state, INVITE_STATES, "invite")
            panel = _panel(s, panel_id)
            if s.get(User, user_id) is None:
                raise NotFound("no such person")
            why = ineligibility(s, panel, user_id)
            if why is not None:
                raise Conflict(f"cannot invite: {why}")
            self._add_invitation(s, panel, user_id, person.user_id)
            audit.record(s, actor=actor, action="panel.invite", object_type="panel",
                         object_id=str(panel_id), detail=f"user={user_id}")

    def invite_group(self, person: Person, panel_id: int, group_id: int, *,
                     actor: str) -> GroupInvitation:
        """The lead invites every eligible member of an expert group of the
        panel's network; the others are listed with the reason."""
        with self._tx(actor, "panel.invite_group", panel_id) as s:
            view = _view(s, person, panel_id)
            _require_lead(view, "invite")
            _require_state(view.state, INVITE_STATES, "invite")
            panel = _panel(s, panel_id)
            if s.scalar(select(ExpertGroup.network_id)
                        .where(ExpertGroup.id == group_id)) != panel.network_id:
                raise NotFound("no such expert group in the panel's network")
            invited, skipped = [], []
            for uid in s.scalars(select(ExpertGroupMember.user_id)
                                 .where(ExpertGroupMember.group_id == group_id)
                                 .order_by(ExpertGroupMember.user_id)):
                why = ineligibility(s, panel, uid)
                if why is None:
                    self._add_invitation(s, panel, uid, person.user_id)
                    invited.append(uid)
                else:
                    skipped.append((uid, why))
            audit.record(s, actor=actor, action="panel.invite_group", object_type="panel",
                         object_id=str(panel_id),
                         detail=f"group={group_id} invited={len(invited)} "
                                f"skipped={len(skipped)}")
            return GroupInvitation(tuple(invited), tuple(skipped))

    def _add_invitation(self, s: Session, panel: Panel, user_id: int, by: int) -> None:
        row = s.scalar(select(PanelMember).where(PanelMember.panel_id == panel.id,
                                                 PanelMember.user_id == user_id))
        if row is None:
            s.add(PanelMember(panel_id=panel.id, user_id=user_id, status="invited",
                              invited_by=by))
        else:  # declined or removed before: a new invitation
            row.status = "invited"
            row.invited_by = by
            row.invited_at = utcnow()
            row.responded_at = None
        panel.updated_at = utcnow()

    def respond(self, person: Person, panel_id: int, accept: bool, *, actor: str) -> None:
        """The invitee accepts or declines."""
        with self._tx(actor, "panel.respond", panel_id) as s:
            view = _view(s, person, panel_id)
            if view.membership is None or view.membership == "removed":
                raise Forbidden("only an invited person answers an invitation")
            if view.membership != "invited":
                raise Conflict(f"the invitation was answered already ({view.membership})")
            _require_state(view.state, ACTIVE_STATES, "answer an invitation")
            row = s.scalar(select(PanelMember).where(PanelMember.panel_id == panel_id,
                                                     PanelMember.user_id == person.user_id))
            if row is None:  # pragma: no cover - panel_view saw it in this transaction
                raise NotFound("no such panel")
            row.status = "accepted" if accept else "declined"
            row.responded_at = utcnow()
            audit.record(s, actor=actor, action="panel.respond", object_type="panel",
                         object_id=str(panel_id), detail=f"status={row.status}")

    def remove_member(self, person: Person, panel_id: int, user_id: int, *,
                      actor: str) -> None:
        with self._tx(actor, "panel.remove_member", panel_id) as s:
            view = _view(s, person, panel_id)
            _require_lead(view, "remove members")
            _require_state(view.state, PREPARE_STATES, "remove members")
            row = s.scalar(select(PanelMember).where(PanelMember.panel_id == panel_id,
                                                     PanelMember.user_id == user_id))
            if row is None or row.status in ("removed", "declined"):
                raise NotFound("the person is not a member or invitee of this panel")
            row.status = "removed"
            audit.record(s, actor=actor, action="panel.remove_member", object_type="panel",
                         object_id=str(panel_id), detail=f"user={user_id}")

    def members(self, person: Person, panel_id: int) -> list[MemberInfo]:
        with self.db.session() as s:
            _view(s, person, panel_id)
            rows = s.execute(select(PanelMember.user_id, User.display_name, PanelMember.status,
                                    PanelMember.invited_at, PanelMember.responded_at)
                             .join(User, User.id == PanelMember.user_id)
                             .where(PanelMember.panel_id == panel_id)
                             .order_by(PanelMember.invited_at, PanelMember.user_id)).all()
        return [MemberInfo(*r) for r in rows]

    # -- contributions -------------------------------------------------------------
    def contributions(self, person: Person, panel_id: int, *,
                      actor: str) -> list[ContributionInfo]:
        """Every round's contributions and requests, oldest first (participants only)."""
        with self._tx(actor, "panel.read_contributions", panel_id) as s:
            view = _view(s, person, panel_id)
            if not _participant(view):
                raise Forbidden("only the lead and accepted members read the contributions")
            rows = s.execute(select(Contribution.id, Contribution.round,
                                    Contribution.author_id, Contribution.kind,
                                    Contribution.body, Contribution.created_at,
                                    Contribution.updated_at)
                             .where(Contribution.panel_id == panel_id)
                             .order_by(Contribution.round, Contribution.id)).all()
            audit.record(s, actor=actor, action="panel.read_contributions",
                         object_type="panel", object_id=str(panel_id))
        return [ContributionInfo(*r) for r in rows]

    def add_contribution(self, person: Person, panel_id: int, body: str, *,
                         kind: str = "contribution", actor: str) -> int:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        validate_text(body, "body")
        with self._tx(actor, "contribution.add", panel_id) as s:
            view = _view(s, person, panel_id)
            if not _participant(view):
                raise Forbidden("only the lead and accepted members contribute")
            panel = _panel(s, panel_id, lock=True)
            _require_state(panel.state, CONTRIBUTION_STATES, "contribute")
            row = Contribution(panel_id=panel_id, round=panel.round, author_id=person.user_id,
                               kind=kind, body=body)
            s.add(row)
            panel.updated_at = utcnow()
            s.flush()
            audit.record(s, actor=actor, action="contribution.add", object_type="panel",
                         object_id=str(panel_id), detail=f"contribution={row.id} kind={kind}")
            return row.id

    def _own_contribution(self, s: Session, person: Person, panel_id: int,
                          contribution_id: int, what: str) -> Contribution:
        view = _view(s, person, panel_id)
        row = s.get(Contribution, contribution_id)
        if row is None or row.panel_id != panel_id:
            raise NotFound("no such contribution")
        if not _participant(view) or row.author_id != person.user_id:
            raise Forbidden(f"only its author may {what} a contribution")
        panel = _panel(s, panel_id, lock=True)
        _require_state(panel.state, CONTRIBUTION_STATES, f"{what} a contribution")
        if row.round != panel.round:
            raise Conflict(f"cannot {what} a contribution of an earlier round")
        return row

    def edit_contribution(self, person: Person, panel_id: int, contribution_id: int,
                          body: str, *, actor: str) -> None:
        validate_text(body, "body")
        with self._tx(actor, "contribution.edit", panel_id) as s:
            row = self._own_contribution(s, person, panel_id, contribution_id, "edit")
            row.body = body
            row.updated_at = utcnow()
            audit.record(s, actor=actor, action="contribution.edit", object_type="panel",
                         object_id=str(panel_id), detail=f"contribution={contribution_id}")

    def delete_contribution(self, person: Person, panel_id: int, contribution_id: int, *,
                            actor: str) -> None:
        with self._tx(actor, "contribution.delete", panel_id) as s:
            row = self._own_contribution(s, person, panel_id, contribution_id, "delete")
            s.delete(row)
            audit.record(s, actor=actor, action="contribution.delete", object_type="panel",
                         object_id=str(panel_id), detail=f"contribution={contribution_id}")

    # -- figures ---------------------------------------------------------------------
    def stats(self, person: Person) -> list[NetworkStats]:
        """Aggregated figures of the networks in which the person is a researcher
        or coordinator: nothing per patient, panel or person."""
        networks = sorted(n for n, r in person.roles if r in ("researcher", "coordinator"))
        if not networks:
            raise Forbidden("only researchers and coordinators see the network's figures")
        out = []
        with self.db.session() as s:
            for network_id in networks:
                per_state = {state: 0 for state in STATES}
                for state, count in s.execute(select(Panel.state, func.count())
                                              .where(Panel.network_id == network_id)
                                              .group_by(Panel.state)):
                    per_state[state] = count
                days = [(closed - opened).total_seconds() / 86400 for opened, closed in
                        s.execute(select(PanelRound.opened_at, PanelRound.closed_at)
                                  .join(Panel, Panel.id == PanelRound.panel_id)
                                  .where(Panel.network_id == network_id,
                                         PanelRound.closed_at.is_not(None)))
                        if closed is not None]
                counts = list(s.scalars(
                    select(func.count(Contribution.id))
                    .select_from(Panel)
                    .outerjoin(Contribution, (Contribution.panel_id == Panel.id)
                               & (Contribution.kind == "contribution"))
                    .where(Panel.network_id == network_id, Panel.state != "draft")
                    .group_by(Panel.id)))
                out.append(NetworkStats(
                    network_id=network_id, panels_per_state=per_state, closed_rounds=len(days),
                    median_days_to_closure=round(statistics.median(days), 2) if days else None,
                    median_contributions_per_panel=statistics.median(counts) if counts
                    else None,
                    mean_contributions_per_panel=round(statistics.fmean(counts), 2) if counts
                    else None))
        return out
