"""Clinical REST API: a centre's enrolments and consents, expert panels, figures.

Every route declares :data:`~dicom_service.web.policy.PersonDep` and calls one
service method; the rules live in :mod:`dicom_service.care.enrolment` (a
clinician's own centre), :mod:`dicom_service.care.panels` (who may do what) and
:func:`dicom_service.care.access.panel_view` (who sees a panel). A panel the
caller may not see is 404; visible but not allowed is 403; a state that does
not allow the action is 409.

Clinician enrolment lives under ``/api/centre/enrolments`` (the caller's own
centre); ``/api/enrolments`` is the administrator-token API of ``web/admin.py``.
The request body of an enrolment carries the patient's local identifier: it is
hashed with the server secret and never stored, logged or returned.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dicom_service.care.enrolment import EnrolmentSummary
from dicom_service.care.panels import PanelDetail, PanelService
from dicom_service.web.deps import ServicesDep
from dicom_service.web.organisation import PROBLEMS
from dicom_service.web.policy import PersonDep

enrolments = APIRouter(prefix="/api/centre/enrolments", tags=["enrolments"],
                       responses=PROBLEMS)
router = APIRouter(prefix="/api/panels", tags=["panels"], responses=PROBLEMS)
stats_router = APIRouter(prefix="/api", tags=["figures"], responses=PROBLEMS)


def panel_service(services: ServicesDep) -> PanelService:
    return PanelService(services.db)


PanelsDep = Annotated[PanelService, Depends(panel_service)]
ConsentKind = Literal["care", "registries", "research"]
State = Literal["draft", "inviting", "review", "meeting", "outcome", "closed", "archived"]


# -- enrolments and consent ---------------------------------------------------------
class EnrolIn(BaseModel):
    patient_id: str = Field(min_length=1, max_length=64,
                            description="the hospital's patient ID: hashed, never stored")
    issuer: str | None = Field(default=None, max_length=64)
    consent_care: bool = Field(description="mandatory: enrolment is refused without it")
    consent_registries: bool = False
    consent_research: bool = False
    form_version: str | None = Field(default=None, max_length=32)


class EnrolmentOut(BaseModel):
    pseudonym: str
    consent_care: bool
    consent_registries: bool
    consent_research: bool
    created_at: datetime
    withdrawn_at: datetime | None


class ConsentIn(BaseModel):
    kind: ConsentKind
    granted: bool
    form_version: str | None = Field(default=None, max_length=32)


class ConsentOut(BaseModel):
    kind: str
    granted: bool
    recorded_by: str
    form_version: str | None
    recorded_at: datetime


def _enrolment(e: EnrolmentSummary) -> EnrolmentOut:
    return EnrolmentOut(pseudonym=e.pseudonym, consent_care=e.consent_care,
                        consent_registries=e.consent_registries,
                        consent_research=e.consent_research, created_at=e.created_at,
                        withdrawn_at=e.withdrawn_at)


@enrolments.post("", status_code=201)
def enrol(body: EnrolIn, services: ServicesDep, caller: PersonDep) -> EnrolmentOut:
    """A clinician enrols a patient of their own centre, with consent for care."""
    care = services.care
    pseudonym = care.enrol_by(caller.person, body.patient_id, body.issuer,
                              consent_care=body.consent_care,
                              consent_registries=body.consent_registries,
                              consent_research=body.consent_research,
                              form_version=body.form_version, actor=caller.principal.actor)
    return _enrolment(care.enrolment_of(caller.person, pseudonym))


@enrolments.get("")
def list_enrolments(services: ServicesDep, caller: PersonDep) -> list[EnrolmentOut]:
    return [_enrolment(e) for e in services.care.centre_enrolments(caller.person)]


@enrolments.get("/{pseudonym}")
def get_enrolment(pseudonym: str, services: ServicesDep, caller: PersonDep) -> EnrolmentOut:
    return _enrolment(services.care.enrolment_of(caller.person, pseudonym))


@enrolments.get("/{pseudonym}/consents")
def consent_history(pseudonym: str, services: ServicesDep,
                    caller: PersonDep) -> list[ConsentOut]:
    return [ConsentOut(kind=c.kind, granted=c.granted, recorded_by=c.recorded_by,
                       form_version=c.form_version, recorded_at=c.recorded_at)
            for c in services.care.consent_history(caller.person, pseudonym)]


@enrolments.post("/{pseudonym}/consents")
def change_consent(pseudonym: str, body: ConsentIn, services: ServicesDep,
                   caller: PersonDep) -> EnrolmentOut:
    """Grant or withdraw a consent. Withdrawing care erases the images, revokes
    the enrolment's tokens and closes its open panels."""
    return _enrolment(services.care.change_consent(
        caller.person, pseudonym, body.kind, body.granted, form_version=body.form_version,
        actor=caller.principal.actor))


# -- panels ----------------------------------------------------------------------------
class PanelIn(BaseModel):
    pseudonym: str = Field(description="the enrolment the panel is about")
    network_id: int
    area_id: int
    title: str = Field(min_length=1, max_length=200,
                       description="the clinical question; never the patient's name")
    urgent: bool = False
    min_contributions: int = Field(default=2, ge=0, le=10)


class RoundOut(BaseModel):
    number: int
    opened_at: datetime
    outcome: str | None
    closed_at: datetime | None
    restart_reason: str | None


class PanelOut(BaseModel):
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
    consent_care: bool = Field(description="the patient's consent for care stands")
    min_contributions: int
    created_at: datetime
    closed_at: datetime | None
    archived_at: datetime | None
    studies: list[str]
    is_lead: bool
    membership: str | None
    images: bool
    next_states: list[str]
    outcome: str | None = Field(description="for the lead and accepted members only")
    rounds: list[RoundOut] | None = Field(description="for the lead and accepted members only")


class PanelListed(BaseModel):
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


class TransitionIn(BaseModel):
    to: State
    reason: str | None = Field(default=None, max_length=20_000,
                               description="for a restart: why the panel is reopened")


class RestartIn(BaseModel):
    to: Literal["inviting", "review"] = "review"
    reason: str | None = Field(default=None, max_length=20_000)


class UrgentIn(BaseModel):
    urgent: bool


class OutcomeIn(BaseModel):
    text: str = Field(min_length=1, max_length=20_000)


class InviteIn(BaseModel):
    user_id: int


class InviteGroupIn(BaseModel):
    group_id: int


class SkippedOut(BaseModel):
    user_id: int
    reason: str


class GroupInvitationOut(BaseModel):
    invited: list[int]
    skipped: list[SkippedOut]


class ResponseIn(BaseModel):
    accept: bool


class MemberOut(BaseModel):
    user_id: int
    display_name: str
    status: str
    invited_at: datetime
    responded_at: datetime | None


class CandidateOut(BaseModel):
    user_id: int
    display_name: str


class ContributionIn(BaseModel):
    body: str = Field(min_length=1, max_length=20_000)
    kind: Literal["contribution", "info_request"] = "contribution"


class ContributionEditIn(BaseModel):
    body: str = Field(min_length=1, max_length=20_000)


class ContributionOut(BaseModel):
    id: int
    round: int
    author_id: int
    kind: str
    body: str
    created_at: datetime
    updated_at: datetime


class CreatedOut(BaseModel):
    id: int


def _panel(p: PanelDetail) -> PanelOut:
    # the answer is the service's view field for field (rounds nested)
    return PanelOut.model_validate(dataclasses.asdict(p))


@router.post("", status_code=201)
def create_panel(body: PanelIn, panels: PanelsDep, caller: PersonDep) -> PanelOut:
    """A clinician of the patient's centre opens a draft panel and leads it."""
    actor = caller.principal.actor
    panel_id = panels.create(caller.person, pseudonym=body.pseudonym,
                             network_id=body.network_id, area_id=body.area_id,
                             title=body.title, urgent=body.urgent,
                             min_contributions=body.min_contributions, actor=actor)
    return _panel(panels.get(caller.person, panel_id, actor=actor))


@router.get("")
def my_panels(panels: PanelsDep, caller: PersonDep) -> list[PanelListed]:
    """Panels the caller leads, is a member of or invited to; a coordinator's network's."""
    return [PanelListed(id=p.id, title=p.title, state=p.state, round=p.round, urgent=p.urgent,
                        network_id=p.network_id, pseudonym=p.pseudonym, is_lead=p.is_lead,
                        membership=p.membership, updated_at=p.updated_at)
            for p in panels.list_mine(caller.person)]


@router.get("/{panel_id}")
def get_panel(panel_id: int, panels: PanelsDep, caller: PersonDep) -> PanelOut:
    return _panel(panels.get(caller.person, panel_id, actor=caller.principal.actor))


@router.post("/{panel_id}/transition")
def transition(panel_id: int, body: TransitionIn, panels: PanelsDep,
               caller: PersonDep) -> PanelOut:
    """Move the panel along its life cycle (the lead only)."""
    return _panel(panels.transition(caller.person, panel_id, body.to, reason=body.reason,
                                    actor=caller.principal.actor))


@router.post("/{panel_id}/restart")
def restart(panel_id: int, body: RestartIn, panels: PanelsDep, caller: PersonDep) -> PanelOut:
    """Reopen a closed panel in a new round; earlier rounds stay as they were."""
    return _panel(panels.restart(caller.person, panel_id, to=body.to, reason=body.reason,
                                 actor=caller.principal.actor))


@router.put("/{panel_id}/urgent", status_code=204)
def set_urgent(panel_id: int, body: UrgentIn, panels: PanelsDep, caller: PersonDep) -> None:
    panels.set_urgent(caller.person, panel_id, body.urgent, actor=caller.principal.actor)


@router.put("/{panel_id}/outcome", status_code=204)
def write_outcome(panel_id: int, body: OutcomeIn, panels: PanelsDep,
                  caller: PersonDep) -> None:
    panels.write_outcome(caller.person, panel_id, body.text, actor=caller.principal.actor)


@router.get("/{panel_id}/members")
def members(panel_id: int, panels: PanelsDep, caller: PersonDep) -> list[MemberOut]:
    return [MemberOut(user_id=m.user_id, display_name=m.display_name, status=m.status,
                      invited_at=m.invited_at, responded_at=m.responded_at)
            for m in panels.members(caller.person, panel_id)]


@router.delete("/{panel_id}/members/{user_id}", status_code=204)
def remove_member(panel_id: int, user_id: int, panels: PanelsDep, caller: PersonDep) -> None:
    panels.remove_member(caller.person, panel_id, user_id, actor=caller.principal.actor)


@router.get("/{panel_id}/candidates")
def candidates(panel_id: int, panels: PanelsDep, caller: PersonDep) -> list[CandidateOut]:
    """Everyone the lead may invite: people of the panel's thematic area."""
    return [CandidateOut(user_id=u, display_name=n)
            for u, n in panels.candidates(caller.person, panel_id)]


@router.post("/{panel_id}/invitations", status_code=201)
def invite(panel_id: int, body: InviteIn, panels: PanelsDep, caller: PersonDep) -> None:
    panels.invite(caller.person, panel_id, body.user_id, actor=caller.principal.actor)


@router.post("/{panel_id}/invitations/group")
def invite_group(panel_id: int, body: InviteGroupIn, panels: PanelsDep,
                 caller: PersonDep) -> GroupInvitationOut:
    done = panels.invite_group(caller.person, panel_id, body.group_id,
                               actor=caller.principal.actor)
    return GroupInvitationOut(invited=list(done.invited),
                              skipped=[SkippedOut(user_id=u, reason=r) for u, r in done.skipped])


@router.post("/{panel_id}/response", status_code=204)
def respond(panel_id: int, body: ResponseIn, panels: PanelsDep, caller: PersonDep) -> None:
    """The invitee accepts or declines."""
    panels.respond(caller.person, panel_id, body.accept, actor=caller.principal.actor)


@router.put("/{panel_id}/studies/{study_uid}", status_code=204)
def share_study(panel_id: int, study_uid: str, panels: PanelsDep, caller: PersonDep) -> None:
    panels.share_study(caller.person, panel_id, study_uid, actor=caller.principal.actor)


@router.delete("/{panel_id}/studies/{study_uid}", status_code=204)
def unshare_study(panel_id: int, study_uid: str, panels: PanelsDep,
                  caller: PersonDep) -> None:
    panels.unshare_study(caller.person, panel_id, study_uid, actor=caller.principal.actor)


@router.get("/{panel_id}/contributions")
def contributions(panel_id: int, panels: PanelsDep,
                  caller: PersonDep) -> list[ContributionOut]:
    return [ContributionOut(id=c.id, round=c.round, author_id=c.author_id, kind=c.kind,
                            body=c.body, created_at=c.created_at, updated_at=c.updated_at)
            for c in panels.contributions(caller.person, panel_id,
                                          actor=caller.principal.actor)]


@router.post("/{panel_id}/contributions", status_code=201)
def add_contribution(panel_id: int, body: ContributionIn, panels: PanelsDep,
                     caller: PersonDep) -> CreatedOut:
    return CreatedOut(id=panels.add_contribution(caller.person, panel_id, body.body,
                                                 kind=body.kind, actor=caller.principal.actor))


@router.put("/{panel_id}/contributions/{contribution_id}", status_code=204)
def edit_contribution(panel_id: int, contribution_id: int, body: ContributionEditIn,
                      panels: PanelsDep, caller: PersonDep) -> None:
    panels.edit_contribution(caller.person, panel_id, contribution_id, body.body,
                             actor=caller.principal.actor)


@router.delete("/{panel_id}/contributions/{contribution_id}", status_code=204)
def delete_contribution(panel_id: int, contribution_id: int, panels: PanelsDep,
                        caller: PersonDep) -> None:
    panels.delete_contribution(caller.person, panel_id, contribution_id,
                               actor=caller.principal.actor)


# -- figures ----------------------------------------------------------------------------
class NetworkStatsOut(BaseModel):
    network_id: int
    panels_per_state: dict[str, int]
    closed_rounds: int
    median_days_to_closure: float | None
    median_contributions_per_panel: float | None
    mean_contributions_per_panel: float | None


@stats_router.get("/stats")
def stats(panels: PanelsDep, caller: PersonDep) -> list[NetworkStatsOut]:
    """Aggregated, non-identifying figures of the caller's networks (researchers
    and coordinators): panels per state, time to closure, contributions per panel."""
    return [NetworkStatsOut(network_id=n.network_id, panels_per_state=n.panels_per_state,
                            closed_rounds=n.closed_rounds,
                            median_days_to_closure=n.median_days_to_closure,
                            median_contributions_per_panel=n.median_contributions_per_panel,
                            mean_contributions_per_panel=n.mean_contributions_per_panel)
            for n in panels.stats(caller.person)]
