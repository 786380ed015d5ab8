"""The authorization matrix: every route x every kind of person x every panel state.

The routes come from the application's own route table, so a new route that
nobody classified here fails the test. The expectations are written out below
from the domain (issue 5 and ``shared/DOMAIN.md``), independently of
``care/access.py`` and the services that implement them: who sees a patient's
images, who sees a panel, who may change it.

Everyone authenticates as in production: a personal token (scopes ``dicomweb``
and ``api``) through ``Authorization: Bearer``; no dependency is overridden.
An outcome is "allowed" unless the answer is 401, 403 or 404 (a 400, 409 or 422
is a refusal by the rules of the object, after the policy let the caller in).
Refusals of images and of panels the caller may not see must be exactly 404,
never 403 (no existence leak). Requests that would change something and are
expected to be allowed run against a fresh copy of the panel in that state, so
the shared world stays as built.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select, update

from dicom_service.care.accounts import AccountService
from dicom_service.config import DEFAULT_PROFILES_DIR
from dicom_service.db.models import (
    Annotation,
    AuditEvent,
    Instance,
    Peer,
    User,
    UserRole,
    utcnow,
)
from dicom_service.errors import Conflict
from dicom_service.ingest.pipeline import Sender
from dicom_service.web.app import create_app
from sample_data.generate import write_ct_series
from tests.panels.conftest import PEOPLE, World, build_world

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

STATES = ("draft", "inviting", "review", "meeting", "outcome", "closed", "archived")
# while members read the shared studies through the panel (read-only once closed)
IMAGE_STATES = {"inviting", "review", "meeting", "outcome", "closed"}
# while the panel is going on (invitations pending, annotations editable)
ACTIVE_STATES = {"inviting", "review", "meeting", "outcome"}

# the kinds of caller, by the world's user name (tests/panels/conftest.py) or added here
KINDS = ("lead", "colleague", "expert1", "expert3", "guest", "invitee", "other_area",
         "guest2", "old_guest", "coordinator", "researcher", "outsider", "admin", "anonymous")
# accepted members of every panel past draft; old_guest's guest role has expired
MEMBERS = {"expert1", "expert3", "guest", "old_guest"}
VALID_MEMBERS = {"expert1", "expert3", "guest"}
CLINICIANS = {"lead", "colleague", "expert1", "expert3", "other_area", "invitee"}
# clinicians of the patient's centre (Hospital A)
HOME = {"lead", "colleague"}

ALLOW, D401, D403, D404 = "allow", "401", "403", "404"


# -- what the domain says ------------------------------------------------------------
def member(kind: str, state: str) -> bool:
    return kind in VALID_MEMBERS and state != "draft"


def sees_images(kind: str, state: str) -> bool:
    """Through the DICOMweb layer: the patient's own centre always; members of
    the panel while it runs and read-only after closing, never once archived."""
    return kind in HOME or (member(kind, state) and state in IMAGE_STATES)


def panel_images(kind: str, state: str) -> bool:
    """Through the panel (annotations): its lead and members, same states."""
    return (kind == "lead" or member(kind, state)) and state in IMAGE_STATES


def sees_panel(kind: str, state: str) -> bool:
    if kind == "lead":
        return True
    if member(kind, state):
        return state != "archived"
    if kind == "invitee" and state != "draft":
        return state in ACTIVE_STATES
    # coordinators follow their network's panels, the patient's centre its own
    return kind in ("coordinator", "colleague")


def on_panel(allowed: Callable[[str, str], bool]) -> Callable[[str, str], str]:
    """Allowed when the caller sees the panel and ``allowed``; else 403 if the
    caller sees the panel, else 404."""
    def expect(kind: str, state: str) -> str:
        if sees_panel(kind, state) and allowed(kind, state):
            return ALLOW
        return D403 if sees_panel(kind, state) else D404
    return expect


def images(kind: str, state: str) -> str:
    return ALLOW if sees_images(kind, state) else D404


def annotation_reads(kind: str, state: str) -> str:
    return ALLOW if panel_images(kind, state) else D404


def annotation_delete(kind: str, state: str) -> str:
    # the annotation was written by expert1 while the panel was inviting
    if not panel_images(kind, state):
        return D404
    if state not in ACTIVE_STATES:
        return ALLOW  # 409: a closed panel's annotations are frozen, for everyone
    return ALLOW if kind in ("lead", "expert1") else D403


def contribution_edit(kind: str, state: str) -> str:
    # expert1 wrote one in review; before review there is none (404 for all)
    if not sees_panel(kind, state) or state in ("draft", "inviting"):
        return D404
    return ALLOW if kind == "expert1" else D403


def everyone(kind: str, state: str) -> str:
    return ALLOW


def only(*kinds: str) -> Callable[[str, str], str]:
    def expect(kind: str, state: str) -> str:
        return ALLOW if kind in kinds else D403
    return expect


def clinicians(kind: str, state: str) -> str:
    return ALLOW if kind in CLINICIANS else D403


def in_network(kind: str, state: str) -> str:
    return ALLOW if kind not in ("outsider", "old_guest") else D403


def member_removal(kind: str, state: str) -> str:
    # the lead removes expert3, who is a member of every panel past draft
    if kind == "lead" and state == "draft":
        return D404  # no such member
    return on_panel(lambda k, s: k == "lead")(kind, state)


def home_centre(kind: str, state: str) -> str:
    return ALLOW if kind in HOME else D404


def browser_session_only(kind: str, state: str) -> str:
    return D403  # personal tokens are made in a browser session, never with a token


ADMIN = only("admin")
NETWORK_ADMIN = only("admin", "coordinator")
LEAD = on_panel(lambda k, s: k == "lead")
LEAD_OR_MEMBER = on_panel(lambda k, s: k == "lead" or member(k, s))


@dataclass(frozen=True)
class Rule:
    expect: Callable[[str, str], str]
    per_state: bool = True  # False: the route does not involve the panel's state
    body: Callable[[Ctx, str], Any] | None = None
    search: bool = False  # QIDO-RS: allowed = the state's study is in the answer


@dataclass
class Ctx:
    """The objects a request names, for one panel state."""

    world: World
    state: str
    panel_id: int
    study_uid: str
    series_uid: str
    sop_uid: str
    pseudonym: str
    contribution_id: int
    annotation_id: int
    spare: dict[str, Any] = field(default_factory=dict)


def _annotation_body(ctx: Ctx, kind: str) -> dict[str, Any]:
    return {"study_uid": ctx.study_uid, "series_uid": ctx.series_uid, "sop_uid": ctx.sop_uid,
            "kind": "length", "points": [[1, 1], [5, 5]]}


# (method, path) -> rule. Paths as the route table spells them.
RULES: dict[tuple[str, str], Rule] = {
    # DICOMweb reads of one study: the patient's images
    **{("GET", "/dicom-web" + p): Rule(images) for p in (
        "/studies/{study}/rendered", "/studies/{study}/series/{series}/rendered",
        "/studies/{study}/series/{series}/instances/{sop}/rendered",
        "/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered",
        "/studies/{study}/thumbnail", "/studies/{study}/series/{series}/thumbnail",
        "/studies/{study}/series/{series}/instances/{sop}/thumbnail",
        "/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/thumbnail",
        "/studies/{study}",
        "/studies/{study}/series/{series}", "/studies/{study}/series/{series}/instances/{sop}",
        "/studies/{study}/metadata", "/studies/{study}/series/{series}/metadata",
        "/studies/{study}/series/{series}/instances/{sop}/metadata",
        "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
        "/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}")},
    ("GET", "/wado"): Rule(images),
    # searches answer everyone, but only with what they may see
    ("GET", "/dicom-web/studies"): Rule(images, search=True),
    ("GET", "/dicom-web/series"): Rule(images, search=True),
    ("GET", "/dicom-web/instances"): Rule(images, search=True),
    ("GET", "/dicom-web/studies/{study}/series"): Rule(images, search=True),
    ("GET", "/dicom-web/studies/{study}/instances"): Rule(images, search=True),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances"): Rule(images, search=True),
    # STOW-RS: tested below (test_stow_only_for_the_patients_centre)
    ("POST", "/dicom-web/studies"): Rule(everyone, per_state=False),
    ("POST", "/dicom-web/studies/{study}"): Rule(everyone, per_state=False),
    # the administrator API
    ("GET", "/api/centres"): Rule(ADMIN, per_state=False),
    ("POST", "/api/centres"): Rule(ADMIN, per_state=False,
                                   body=lambda c, k: {"name": c.spare["new_name"]}),
    ("GET", "/api/peers"): Rule(ADMIN, per_state=False),
    ("POST", "/api/peers"): Rule(ADMIN, per_state=False, body=lambda c, k: {
        "ae_title": c.spare["new_ae"], "centre": "Hospital B"}),
    ("DELETE", "/api/peers/{ae_title}"): Rule(ADMIN, per_state=False),
    ("POST", "/api/enrolments"): Rule(ADMIN, per_state=False, body=lambda c, k: {
        "centre": "Hospital B", "patient_id": c.spare["new_name"]}),
    ("POST", "/api/enrolments/{pseudonym}/consent/withdraw"): Rule(ADMIN, per_state=False),
    ("GET", "/api/profiles"): Rule(ADMIN, per_state=False),
    ("GET", "/api/profiles/activations"): Rule(ADMIN, per_state=False),
    ("POST", "/api/profiles/activations"): Rule(ADMIN, per_state=False,
                                                body=lambda c, k: c.spare["activation"]),
    ("GET", "/api/profiles/samples"): Rule(ADMIN, per_state=False),
    ("POST", "/api/profiles/validate"): Rule(ADMIN, per_state=False,
                                             body=lambda c, k: "FORMAT dicom\n%header\n"),
    ("GET", "/api/profiles/{name}"): Rule(ADMIN, per_state=False),
    ("POST", "/api/profiles/{name}/dry-run"): Rule(ADMIN, per_state=False),
    ("POST", "/api/profiles/{name}/draft-dry-run"): Rule(ADMIN, per_state=False, body=lambda c, k: {
        "file": "basic.dicom", "text": c.spare["basic_text"], "sample": "ct"}),
    ("POST", "/api/profiles/{name}/leak-check"): Rule(ADMIN, per_state=False),
    ("GET", "/api/audit"): Rule(ADMIN, per_state=False),
    ("GET", "/api/audit/verify"): Rule(ADMIN, per_state=False),
    # organisation
    ("GET", "/api/networks"): Rule(everyone, per_state=False),
    ("POST", "/api/networks"): Rule(ADMIN, per_state=False,
                                    body=lambda c, k: {"name": c.spare["new_name"]}),
    ("GET", "/api/networks/{network_id}/areas"): Rule(everyone, per_state=False),
    ("POST", "/api/networks/{network_id}/areas"): Rule(NETWORK_ADMIN, per_state=False,
                                                       body=lambda c, k: {
                                                           "code": c.spare["new_name"][:30],
                                                           "name": "A new area"}),
    ("GET", "/api/networks/{network_id}/centres"): Rule(everyone, per_state=False),
    ("POST", "/api/networks/{network_id}/centres"): Rule(ADMIN, per_state=False, body=lambda c, k: {
        "centre_id": c.spare["spare_centre"]}),
    ("DELETE", "/api/networks/{network_id}/centres/{centre_id}"): Rule(ADMIN, per_state=False),
    ("GET", "/api/networks/{network_id}/roles"): Rule(NETWORK_ADMIN, per_state=False),
    ("POST", "/api/networks/{network_id}/roles"): Rule(NETWORK_ADMIN, per_state=False,
                                                       body=lambda c, k: {
                                                           "user_id": c.spare["spare_user"],
                                                           "role": "researcher"}),
    ("POST", "/api/networks/{network_id}/roles/{user_id}/{role}/extend"): Rule(
        NETWORK_ADMIN, per_state=False, body=lambda c, k: {"days": 30}),
    ("DELETE", "/api/networks/{network_id}/roles/{user_id}/{role}"): Rule(NETWORK_ADMIN,
                                                                           per_state=False),
    ("GET", "/api/me/preferences"): Rule(everyone, per_state=False),
    ("PUT", "/api/me/preferences"): Rule(everyone, per_state=False,
                                         body=lambda c, k: {"area_ids": c.spare["areas"][k]}),
    ("GET", "/api/networks/{network_id}/groups"): Rule(in_network, per_state=False),
    ("POST", "/api/networks/{network_id}/groups"): Rule(NETWORK_ADMIN, per_state=False,
                                                        body=lambda c, k: {
                                                            "name": c.spare["new_name"]}),
    ("POST", "/api/groups/{group_id}/members"): Rule(NETWORK_ADMIN, per_state=False,
                                                     body=lambda c, k: {
                                                         "user_id": c.spare["spare_user"]}),
    ("DELETE", "/api/groups/{group_id}/members/{user_id}"): Rule(NETWORK_ADMIN,
                                                                 per_state=False),
    # a centre's enrolments: its clinicians
    ("POST", "/api/centre/enrolments"): Rule(clinicians, per_state=False, body=lambda c, k: {
        "patient_id": c.spare["new_name"], "consent_care": True}),
    ("GET", "/api/centre/enrolments"): Rule(clinicians, per_state=False),
    # an enrolment named by its pseudonym: 404 for anyone not of the patient's centre
    ("GET", "/api/centre/enrolments/{pseudonym}"): Rule(home_centre),
    ("GET", "/api/centre/enrolments/{pseudonym}/consents"): Rule(home_centre),
    ("POST", "/api/centre/enrolments/{pseudonym}/consents"): Rule(
        home_centre,
        body=lambda c, k: {"kind": "research", "granted": True}),
    # panels
    ("POST", "/api/panels"): Rule(lambda k, s: ALLOW if k in HOME else (
        D404 if k in CLINICIANS else D403), per_state=False, body=lambda c, k: {
        "pseudonym": c.pseudonym, "network_id": c.world.network_id,
        "area_id": c.world.areas["VASCA"], "title": "A question"}),
    ("GET", "/api/panels"): Rule(everyone, per_state=False),
    ("GET", "/api/panels/{panel_id}"): Rule(on_panel(sees_panel)),
    ("POST", "/api/panels/{panel_id}/transition"): Rule(LEAD, body=lambda c, k: {"to": "review"}),
    ("POST", "/api/panels/{panel_id}/restart"): Rule(LEAD, body=lambda c, k: {"reason": "news"}),
    ("PUT", "/api/panels/{panel_id}/urgent"): Rule(LEAD, body=lambda c, k: {"urgent": True}),
    ("PUT", "/api/panels/{panel_id}/outcome"): Rule(LEAD, body=lambda c, k: {"text": "Agreed."}),
    ("GET", "/api/panels/{panel_id}/members"): Rule(on_panel(sees_panel)),
    ("DELETE", "/api/panels/{panel_id}/members/{user_id}"): Rule(member_removal),
    ("GET", "/api/panels/{panel_id}/candidates"): Rule(LEAD),
    ("POST", "/api/panels/{panel_id}/invitations"): Rule(LEAD, body=lambda c, k: {
        "user_id": c.world.users["expert2"]}),
    ("POST", "/api/panels/{panel_id}/invitations/group"): Rule(LEAD, body=lambda c, k: {
        "group_id": c.spare["group"]}),
    ("POST", "/api/panels/{panel_id}/response"): Rule(
        on_panel(lambda k, s: k == "invitee" or member(k, s)), body=lambda c, k: {"accept": True}),
    ("PUT", "/api/panels/{panel_id}/studies/{study_uid}"): Rule(LEAD),
    ("DELETE", "/api/panels/{panel_id}/studies/{study_uid}"): Rule(LEAD),
    ("GET", "/api/panels/{panel_id}/contributions"): Rule(LEAD_OR_MEMBER),
    ("POST", "/api/panels/{panel_id}/contributions"): Rule(LEAD_OR_MEMBER, body=lambda c, k: {
        "body": "I agree."}),
    ("PUT", "/api/panels/{panel_id}/contributions/{contribution_id}"): Rule(
        contribution_edit, body=lambda c, k: {"body": "Edited."}),
    ("DELETE", "/api/panels/{panel_id}/contributions/{contribution_id}"): Rule(
        contribution_edit),
    ("GET", "/api/stats"): Rule(only("coordinator", "researcher"), per_state=False),
    ("GET", "/api/panels/{panel_id}/annotations"): Rule(annotation_reads),
    ("POST", "/api/panels/{panel_id}/annotations"): Rule(annotation_reads, body=_annotation_body),
    ("DELETE", "/api/panels/{panel_id}/annotations/{annotation_id}"): Rule(annotation_delete),
    # the person's own account
    ("GET", "/api/me"): Rule(everyone, per_state=False),
    ("GET", "/api/me/tokens"): Rule(everyone, per_state=False),
    ("POST", "/api/me/tokens"): Rule(browser_session_only, per_state=False,
                                     body=lambda c, k: {"scopes": ["api"]}),
    # revoking one's own token (a second one, so the matrix keeps its own)
    ("DELETE", "/api/me/tokens/{token_id}"): Rule(everyone, per_state=False),
}

# routes anyone may call, and why
PUBLIC = {
    ("POST", "/api/auth/login"): "logging in",
    ("POST", "/api/auth/totp"): "the second step of logging in",
    ("POST", "/api/auth/totp/confirm"): "enrolling the second factor while logging in",
    ("POST", "/api/auth/logout"): "ends the caller's own session, if any",
    ("GET", "/viewer"): "static viewer files (data comes through DICOMweb)",
    ("GET", "/viewer/dictionary.json"): "the DICOM tag dictionary of the viewer",
    ("GET", "/viewer/{relative:path}"): "static viewer files",
    ("GET", "/"): "redirect to the pages",
    ("GET", "/health"): "operations",
    ("GET", "/metrics"): "operations (counters only)",
}

DICOMWEB_PREFIX = "/dicom-web"


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route of the application, prefixes included."""
    out: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for r in routes:
            if isinstance(r, APIRoute):
                out.extend((m, prefix + r.path) for m in sorted(r.methods or ()))
            elif hasattr(r, "original_router"):
                walk(r.original_router.routes, prefix + r.include_context.prefix)

    walk(app.router.routes, "")
    return out


# -- the world -------------------------------------------------------------------------
@dataclass
class Matrix:
    world: World
    app: FastAPI
    client: TestClient
    tokens: dict[str, str]
    ctx: dict[str, Ctx]
    scratch: str  # pseudonym of an enrolment for fresh panels


def _add_user(world: World, name: str, centre: str | None, role: str | None,
              areas: tuple[str, ...] = ("VASCA",)) -> None:
    with world.services.db.session() as s:
        user = User(username=name, display_name=name.title(),
                    centre_id=world.centres[centre] if centre else None,
                    password_hash="not-a-hash")
        s.add(user)
        s.flush()
        world.users[name] = user.id
    if role:
        world.org.grant_role(world.users[name], world.network_id, role, by=None)
        world.org.set_preferences(world.users[name], [world.areas[a] for a in areas],
                                  by=None)


def _ingest_study(world: World, directory: Path, patient_id: str) -> tuple[str, str, str]:
    sender = Sender(centre_id=world.centres["Hospital A"], actor="peer:TEST_PACS")
    result = None
    for path in write_ct_series(directory / patient_id, n=1, size=16, patient_id=patient_id,
                                issuer="HOSP-A"):
        ds = pydicom.dcmread(path)
        result = world.services.pipeline.ingest(ds, str(ds.file_meta.TransferSyntaxUID),
                                                sender)
    assert result is not None
    return result.study_uid, result.series_uid, result.sop_uid


def _panel_in(world: World, state: str, pseudonym: str, study_uid: str, series_uid: str,
              sop_uid: str) -> tuple[int, int, int]:
    """A panel of ``pseudonym`` sharing the study, brought to ``state`` with its
    members; return (panel, expert1's contribution or 0, expert1's annotation or 0)."""
    lead = world.person("lead")
    panel = world.panels.create(lead, pseudonym=pseudonym, network_id=world.network_id,
                                area_id=world.areas["VASCA"], title="Which treatment?",
                                actor=world.actor("lead"))
    world.panels.share_study(lead, panel, study_uid, actor=world.actor("lead"))
    contribution = annotation = 0
    if state == "draft":
        return panel, 0, 0
    world.move(panel, "inviting")
    _set_old_guest_expiry(world, None)  # invited while the role was valid
    for name in ("expert1", "expert3", "guest", "old_guest"):
        world.member(panel, name)
    _set_old_guest_expiry(world, utcnow() - timedelta(days=1))
    world.panels.invite(lead, panel, world.users["invitee"], actor=world.actor("lead"))
    with world.services.db.session() as s:
        row = Annotation(panel_id=panel, study_uid=study_uid, series_uid=series_uid,
                         sop_uid=sop_uid, frame=1, author_id=world.users["expert1"],
                         kind="length", data='{"points": [[1, 1], [4, 4]], "text": ""}')
        s.add(row)
        s.flush()
        annotation = row.id
    if state == "inviting":
        return panel, 0, annotation
    world.move(panel, "review")
    contribution = world.contribute(panel, "expert1")
    world.contribute(panel, "expert3")
    path = {"review": [], "meeting": ["meeting"], "outcome": ["outcome"],
            "closed": ["outcome", "closed"], "archived": ["outcome", "closed", "archived"]}
    for step in path[state]:
        if step == "closed":
            world.panels.write_outcome(lead, panel, "Treat.", actor=world.actor("lead"))
        world.move(panel, step)
    return panel, contribution, annotation


def _set_old_guest_expiry(world: World, when: datetime | None) -> None:
    with world.services.db.session() as s:
        s.execute(update(UserRole).where(UserRole.user_id == world.users["old_guest"])
                  .values(expires_at=when))


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    root = tmp_path_factory.mktemp("matrix")
    world = build_world(root / "data")
    _add_user(world, "invitee", "Hospital B", "health_professional")
    _add_user(world, "guest2", "Outside Clinic", "guest")
    _add_user(world, "old_guest", "Outside Clinic", "guest")
    _add_user(world, "spare", "Hospital B", None)
    lead = world.person("lead")
    ctx: dict[str, Ctx] = {}
    for state in STATES:
        patient = f"MATRIX-{state.upper()}"
        pseudonym = world.services.care.enrol_by(lead, patient, "HOSP-A", consent_care=True,
                                                 form_version="v1", actor=world.actor("lead"))
        uids = _ingest_study(world, root / "dicom", patient)
        panel, contribution, annotation = _panel_in(world, state, pseudonym, *uids)
        ctx[state] = Ctx(world, state, panel, *uids, pseudonym, contribution, annotation)
    scratch = world.services.care.enrol_by(lead, "MATRIX-SCRATCH", "HOSP-A", consent_care=True,
                                           form_version="v1", actor=world.actor("lead"))
    scratch_uids = _ingest_study(world, root / "dicom", "MATRIX-SCRATCH")
    group = world.org.add_group(world.network_id, "Vascular experts", world.areas["VASCA"],
                                by=None)
    world.org.add_group_member(group, world.users["expert2"], by=None)
    spare_centre = world.services.care.add_centre("Spare Clinic", actor="test")
    accounts = AccountService(world.services.db, b"s" * 32)
    tokens = {kind: accounts.issue_token(world.users[kind], ["api", "dicomweb"])[1]
              for kind in KINDS if kind != "anonymous"}
    second_tokens = {kind: accounts.issue_token(world.users[kind], ["api"])[0]
                     for kind in KINDS if kind != "anonymous"}
    app = create_app(world.services)
    with TestClient(app) as client:
        m = Matrix(world, app, client, tokens, ctx, scratch)
        default = world.services.profiles.get("default")
        areas = {kind: [world.areas[a] for a in PEOPLE.get(kind, (None, (), ("VASCA",)))[2]]
                 for kind in KINDS}
        areas.update(outsider=[], admin=[])
        for c in ctx.values():
            c.spare.update(group=group, spare_centre=spare_centre,
                           spare_user=world.users["spare"], scratch_uids=scratch_uids,
                           second_tokens=second_tokens,
                           areas=areas, basic_text=(DEFAULT_PROFILES_DIR / "basic.dicom")
                           .read_text(encoding="utf-8"),
                           activation={"name": default.name, "version": default.version,
                                       "sha256": default.sha256})
        yield m
    world.services.close()


# -- making requests ---------------------------------------------------------------------
_counter = iter(range(1, 1_000_000))


def _fill(path: str, ctx: Ctx, kind: str) -> tuple[str, dict[str, str]]:
    w = ctx.world
    values = {
        "study": ctx.study_uid, "series": ctx.series_uid, "sop": ctx.sop_uid, "frame": "1",
        "frames": "1", "tag": "7FE00010", "panel_id": str(ctx.panel_id),
        "study_uid": ctx.study_uid, "pseudonym": ctx.pseudonym,
        "contribution_id": str(ctx.contribution_id or 999_999),
        "annotation_id": str(ctx.annotation_id or 999_999),
        "network_id": str(w.network_id), "group_id": str(ctx.spare["group"]),
        "centre_id": str(ctx.spare["spare_centre"]), "name": "basic",
        "ae_title": ctx.spare.get("spare_ae", "NOSUCH_AE"),
        "token_id": str(ctx.spare["second_tokens"].get(kind, 999_999)),
        "role": "researcher",
    }
    if path == "/api/enrolments/{pseudonym}/consent/withdraw":
        values["pseudonym"] = ctx.spare.get("spare_pseudonym", "ERN-0000000000")
    if "/members/{user_id}" in path and path.startswith("/api/panels"):
        values["user_id"] = str(w.users["expert3"])
    else:
        values["user_id"] = str(ctx.spare["spare_user"])
    filled = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)
    query: dict[str, str] = {}
    if path == "/wado":
        query = {"requestType": "WADO", "studyUID": ctx.study_uid,
                 "seriesUID": ctx.series_uid, "objectUID": ctx.sop_uid,
                 "contentType": "application/dicom"}
    elif path.endswith("/dry-run"):
        query = {"sample": "ct"}
    elif path.startswith(DICOMWEB_PREFIX) and filled.rstrip("/").endswith(
            ("/studies", "/series", "/instances")):
        query = {"limit": "1000"}
    return filled, query


def _classify(status: int) -> str:
    return {401: D401, 403: D403, 404: D404}.get(status, ALLOW)


def _request(m: Matrix, method: str, path: str, rule: Rule, ctx: Ctx, kind: str) -> str:
    url, query = _fill(path, ctx, kind)
    headers = {} if kind == "anonymous" else {"Authorization": f"Bearer {m.tokens[kind]}"}
    kwargs: dict[str, Any] = {"params": query, "headers": headers}
    if rule.body is not None:
        body = rule.body(ctx, kind)
        if isinstance(body, str):
            kwargs["content"] = body
            headers["Content-Type"] = "text/plain"
        else:
            kwargs["json"] = body
    r = m.client.request(method, url, **kwargs)
    assert r.status_code < 500, (method, url, kind, r.status_code, r.text[:300])
    outcome = _classify(r.status_code)
    if rule.search and outcome == ALLOW:
        outcome = ALLOW if ctx.study_uid in r.text else D404
    return outcome


def _fresh(m: Matrix, state: str) -> Ctx:
    """A new panel in ``state`` on the scratch enrolment, for a request that changes it."""
    base = m.ctx[state]
    study, series, sop = base.spare["scratch_uids"]
    panel, contribution, annotation = _panel_in(m.world, state, m.scratch, study, series, sop)
    return Ctx(m.world, state, panel, study, series, sop, m.scratch, contribution, annotation,
               spare=dict(base.spare))


def _spare_objects(m: Matrix, ctx: Ctx) -> Ctx:
    """Fresh throwaway targets for one request that changes organisation or
    administration: a peer, an enrolment, a centre in the network, the spare
    person's role and group membership, new names."""
    n = next(_counter)
    w = m.world
    ae = f"SPARE_AE_{n}"
    with w.services.db.session() as s:
        s.add(Peer(ae_title=ae, centre_id=w.centres["Hospital B"]))
    spare = w.users["spare"]
    with contextlib.suppress(Conflict):  # there already
        w.org.grant_role(spare, w.network_id, "researcher", by=None)
    with contextlib.suppress(Conflict):
        w.org.add_group_member(ctx.spare["group"], spare, by=None)
    with contextlib.suppress(Conflict):
        w.org.join_network(ctx.spare["spare_centre"], w.network_id, by=None)
    pseudonym = w.services.care.enrol("Hospital B", f"SPARE-{n}", None, actor="test")
    return Ctx(w, ctx.state, ctx.panel_id, ctx.study_uid, ctx.series_uid, ctx.sop_uid,
               ctx.pseudonym, ctx.contribution_id, ctx.annotation_id,
               spare={**ctx.spare, "spare_ae": ae, "new_name": f"Spare {n}",
                      "new_ae": f"NEW_AE_{n}", "spare_pseudonym": pseudonym})


def _cases() -> Iterator[tuple[str, str, Rule, str, str, str]]:
    for (method, path), rule in RULES.items():
        for kind in KINDS:
            for state in (STATES if rule.per_state else ("review",)):
                expected = D401 if kind == "anonymous" else rule.expect(kind, state)
                yield method, path, rule, kind, state if rule.per_state else "-", expected


# -- the tests ---------------------------------------------------------------------------
def test_every_route_is_classified(matrix: Matrix) -> None:
    routes = set(route_table(matrix.app))
    unclassified = routes - set(RULES) - set(PUBLIC)
    stale = (set(RULES) | set(PUBLIC)) - routes
    assert not unclassified, f"classify these routes in RULES or PUBLIC: {sorted(unclassified)}"
    assert not stale, f"these routes no longer exist: {sorted(stale)}"


def test_the_authorization_matrix(matrix: Matrix) -> None:
    """Every route x every kind of caller x every panel state: the expected
    allow or deny, and zero unexpected allows."""
    mismatches: list[str] = []
    unexpected_allows = 0
    cases = 0
    for method, path, rule, kind, state, expected in _cases():
        base = matrix.ctx[state if state != "-" else "review"]
        changes = method != "GET"
        if changes and expected == ALLOW:
            ctx = _fresh(matrix, base.state) if rule.per_state else _spare_objects(matrix, base)
        elif changes and not rule.per_state:
            ctx = _spare_objects(matrix, base)
        else:
            ctx = base
        actual = _request(matrix, method, path, rule, ctx, kind)
        cases += 1
        if actual != expected:
            unexpected_allows += actual == ALLOW
            mismatches.append(f"{method} {path} as {kind} in {state}: expected {expected}, "
                              f"got {actual}")
    assert cases > 2000
    assert not mismatches, (f"{len(mismatches)} mismatches ({unexpected_allows} unexpected "
                            "allows):\n" + "\n".join(mismatches[:400]))


def test_a_member_of_one_panel_cannot_guess_into_another(matrix: Matrix) -> None:
    """expert1 is a member of every panel but the draft: the draft's patient's
    images and metadata are 404 by every DICOMweb route, with the right UIDs."""
    ctx = matrix.ctx["draft"]
    auth = {"Authorization": f"Bearer {matrix.tokens['expert1']}"}
    study, series, sop = ctx.study_uid, ctx.series_uid, ctx.sop_uid
    for url in (f"/dicom-web/studies/{study}", f"/dicom-web/studies/{study}/metadata",
                f"/dicom-web/studies/{study}/series/{series}/metadata",
                f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1",
                f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered",
                f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}"):
        r = matrix.client.get(url, headers=auth)
        assert r.status_code == 404, url
        assert study not in r.text
    # searches answer, but with nothing of that study
    for url in ("/dicom-web/studies", f"/dicom-web/studies/{study}/series",
                f"/dicom-web/studies/{study}/instances"):
        search = matrix.client.get(url, params={"StudyInstanceUID": study}, headers=auth)
        assert search.status_code in (200, 204), url
        assert study not in search.text
    # while the same person reads the review panel's study
    review = matrix.ctx["review"]
    ok = matrix.client.get(f"/dicom-web/studies/{review.study_uid}/metadata", headers=auth)
    assert ok.status_code == 200


def test_reads_and_refusals_are_audited(matrix: Matrix) -> None:
    """What the policy allows or refuses lands in the audit: a member's read,
    an outsider's refused read (told apart from a study that does not exist,
    which the caller cannot), a search, a request without credentials; a UID
    the index does not hold is not written."""
    ctx = matrix.ctx["meeting"]
    client, tokens = matrix.client, matrix.tokens
    meta = f"/dicom-web/studies/{ctx.study_uid}/metadata"
    missing = "2.25.1234567890"
    assert client.get(meta, headers={"Authorization": f"Bearer {tokens['expert1']}"}
                      ).status_code == 200
    outsider = {"Authorization": f"Bearer {tokens['outsider']}"}
    refused = client.get(meta, headers=outsider)
    absent = client.get(f"/dicom-web/studies/{missing}/metadata", headers=outsider)
    assert refused.status_code == absent.status_code == 404
    assert refused.json() == absent.json()  # the caller cannot tell them apart
    assert client.get("/dicom-web/studies", headers=outsider).status_code == 200
    assert client.get(meta).status_code == 401
    matrix.world.services.reads.flush()
    with matrix.world.services.db.engine.connect() as conn:
        rows = {(r.actor, r.action, r.object_id, r.result) for r in conn.execute(
            select(AuditEvent.actor, AuditEvent.action, AuditEvent.object_id,
                   AuditEvent.result))}
    w = matrix.world
    assert (w.actor("expert1"), "dicomweb.read", ctx.study_uid, "ok") in rows
    assert (w.actor("outsider"), "dicomweb.read", ctx.study_uid, "refused") in rows
    # a UID the index does not hold may be an original: the audit does not keep it
    assert (w.actor("outsider"), "dicomweb.read", "-", "not-found") in rows
    assert not any(missing in object_id for _, _, object_id, _ in rows)
    assert (w.actor("outsider"), "dicomweb.search", "studies", "ok") in rows
    assert ("anonymous", "auth.refused: no valid credential",
            "/studies/{study}/metadata", "refused") in rows


def test_after_withdrawal_no_route_returns_the_images(matrix: Matrix) -> None:
    """Runs last (it erases the review panel's patient): after consent for care
    is withdrawn, every image route answers 404 and every search leaves the
    study out, for the patient's own centre and for the panel's members; the
    files are gone and the audit holds the event."""
    ctx = matrix.ctx["review"]
    services = matrix.world.services
    with services.db.engine.connect() as conn:
        paths = [services.store.root / p for p in conn.scalars(
            select(Instance.path).where(Instance.study_uid == ctx.study_uid))]
    assert paths and all(p.exists() for p in paths)
    for kind in ("lead", "expert1"):
        assert _request(matrix, "GET", "/dicom-web/studies/{study}/metadata",
                        RULES[("GET", "/dicom-web/studies/{study}/metadata")], ctx,
                        kind) == ALLOW

    services.care.withdraw_consent(ctx.pseudonym, actor=matrix.world.actor("lead"))

    image_routes = [(method, path, rule) for (method, path), rule in RULES.items()
                    if rule.expect is images]
    assert len(image_routes) > 20
    for kind in ("lead", "colleague", "expert1", "expert3", "guest"):
        for method, path, rule in image_routes:
            assert _request(matrix, method, path, rule, ctx, kind) == D404, (path, kind)
    assert not any(p.exists() for p in paths)
    with services.db.engine.connect() as conn:
        events = conn.execute(select(AuditEvent.actor, AuditEvent.detail).where(
            AuditEvent.action == "consent.withdraw",
            AuditEvent.object_id == ctx.pseudonym)).all()
    assert len(events) == 1
    assert events[0].actor == matrix.world.actor("lead")
    assert f"instances_removed={len(paths)}" in (events[0].detail or "")
