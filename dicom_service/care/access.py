"""Who a person is to the access policy, and what they may see.

This module holds the rules; :mod:`dicom_service.web.policy` applies them to
every HTTP route and the DICOMweb layer, and :mod:`dicom_service.care.panels`
uses :func:`panel_view` before any panel operation.

Roles are per network: ``health_professional``, ``coordinator``,
``dispatcher``, ``researcher``, ``guest``. A role with ``expires_at`` in the
past (a guest after 90 days) counts as absent. Platform administrators manage
peers, profiles and accounts; they see no images and no panels by that role.

Images (shared studies):
- a health professional or dispatcher sees every enrolment of their own centre;
- an accepted member of a panel (lead included) sees the panel's shared
  studies while the panel is inviting, in review, in a meeting or at the
  outcome, and read-only once closed; nothing once archived. A member must
  still hold a valid role in the panel's network (an expired guest sees
  nothing);
- coordinators see panel metadata but not images unless they are members;
  researchers see only aggregated, non-identifying figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Connection, Integer, column, or_, select, table

from dicom_service.db.models import (
    Enrolment,
    Panel,
    PanelMember,
    PanelStudy,
    User,
    UserRole,
    utcnow,
)

ROLES = ("health_professional", "coordinator", "dispatcher", "researcher", "guest")
# panel states, in life-cycle order
STATES = ("draft", "inviting", "review", "meeting", "outcome", "closed", "archived")
# states in which accepted members read the shared studies
IMAGE_STATES = frozenset({"inviting", "review", "meeting", "outcome", "closed"})
# states in which members may still change things (contributions, annotations)
ACTIVE_STATES = frozenset({"inviting", "review", "meeting", "outcome"})
# roles that see their own centre's enrolments
CLINICAL_ROLES = frozenset({"health_professional", "dispatcher"})


@dataclass(frozen=True)
class Person:
    """A logged-in person as the policy sees them (valid roles only)."""

    user_id: int
    centre_id: int | None
    is_admin: bool
    # (network ID, role) of every role that has not expired
    roles: frozenset[tuple[int, str]]

    def has_role(self, role: str, network_id: int | None = None) -> bool:
        return any(r == role and (network_id is None or n == network_id)
                   for n, r in self.roles)

    def networks(self) -> frozenset[int]:
        return frozenset(n for n, _ in self.roles)

    @property
    def is_clinician(self) -> bool:
        """Health professional or dispatcher in some network, with a centre."""
        return self.centre_id is not None and any(r in CLINICAL_ROLES for _, r in self.roles)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite returns naive UTC
        return value.replace(tzinfo=utcnow().tzinfo)
    return value


def load_person(conn: Connection, user_id: int, now: datetime | None = None) -> Person | None:
    """The person ``user_id`` with their valid roles; ``None`` if absent or disabled."""
    return person_until(conn, user_id, now)[0]


def person_until(conn: Connection, user_id: int, now: datetime | None = None
                 ) -> tuple[Person | None, datetime | None]:
    """:func:`load_person`, and until when it holds by time alone: the earliest
    expiry of the roles counted (``None``: no counted role expires)."""
    now = now or utcnow()
    user = conn.execute(select(User.centre_id, User.is_platform_admin, User.disabled_at)
                        .where(User.id == user_id)).first()
    if user is None or user.disabled_at is not None:
        return None, None
    roles = set()
    until: datetime | None = None
    for network_id, role, expires in conn.execute(
            select(UserRole.network_id, UserRole.role, UserRole.expires_at)
            .where(UserRole.user_id == user_id)):
        exp = _aware(expires)
        if exp is None or exp > now:
            roles.add((network_id, role))
            if exp is not None and (until is None or exp < until):
                until = exp
    return Person(user_id=user_id, centre_id=user.centre_id,
                  is_admin=bool(user.is_platform_admin), roles=frozenset(roles)), until


@dataclass(frozen=True)
class PanelView:
    """What a person may do with one panel they can see."""

    panel_id: int
    state: str
    is_lead: bool
    # invited, accepted, declined, removed; None if not invited
    membership: str | None
    # may read the shared studies through this panel
    images: bool


def panel_view(conn: Connection, person: Person, panel_id: int) -> PanelView | None:
    """How ``person`` sees the panel, or ``None`` if they may not see it at all
    (the caller answers 404 then, as for a panel that does not exist)."""
    row = conn.execute(select(Panel.network_id, Panel.state, Panel.lead_user_id,
                              Enrolment.centre_id)
                       .join(Enrolment, Enrolment.id == Panel.enrolment_id)
                       .where(Panel.id == panel_id)).first()
    if row is None:
        return None
    network_id, state, lead_id, centre_id = row
    membership = conn.scalar(select(PanelMember.status).where(
        PanelMember.panel_id == panel_id, PanelMember.user_id == person.user_id))
    in_network = network_id in person.networks()
    is_lead = lead_id == person.user_id and in_network
    accepted = membership == "accepted" and in_network
    images = (is_lead or accepted) and state in IMAGE_STATES
    if is_lead or accepted:
        if state == "archived" and not is_lead:
            return None
        return PanelView(panel_id, state, is_lead, membership, images)
    if membership == "invited" and in_network and state in ACTIVE_STATES:
        return PanelView(panel_id, state, False, membership, False)
    if person.has_role("coordinator", network_id):
        return PanelView(panel_id, state, False, membership, False)
    if person.is_clinician and person.centre_id == centre_id and in_network:
        # the patient's own centre follows its panels (metadata; images through
        # the centre's own access)
        return PanelView(panel_id, state, False, membership, False)
    return None


# A counter that every change able to change what someone may see moves, in
# the change's own transaction (database triggers, migration 0006): a scope
# worked out at one value holds while the counter has not moved (and no role
# it counted has expired, see person_until).
_GENERATION = table("access_generation", column("id", Integer), column("value", BigInteger))
ACCESS_GENERATION = select(_GENERATION.c.value).where(_GENERATION.c.id == 1)


@dataclass(frozen=True)
class ImageScope:
    """What a caller may read: whole enrolments and single studies."""

    enrolments: frozenset[int]
    studies: frozenset[str]

    def sees(self, enrolment_id: int, study_uid: str) -> bool:
        return enrolment_id in self.enrolments or study_uid in self.studies


EMPTY_SCOPE = ImageScope(frozenset(), frozenset())


def image_scope(conn: Connection, person: Person) -> ImageScope:
    """Every enrolment and study whose images ``person`` may read."""
    enrolments: frozenset[int] = frozenset()
    if person.is_clinician:
        enrolments = frozenset(conn.scalars(select(Enrolment.id).where(
            Enrolment.centre_id == person.centre_id, Enrolment.consent_care.is_(True))))
    networks = person.networks()
    studies: frozenset[str] = frozenset()
    if networks:
        studies = frozenset(conn.scalars(
            select(PanelStudy.study_uid)
            .join(Panel, Panel.id == PanelStudy.panel_id)
            .join(Enrolment, Enrolment.id == Panel.enrolment_id)
            .outerjoin(PanelMember, (PanelMember.panel_id == Panel.id)
                       & (PanelMember.user_id == person.user_id))
            .where(Panel.state.in_(sorted(IMAGE_STATES)),
                   Panel.network_id.in_(sorted(networks)),
                   Enrolment.consent_care.is_(True),
                   or_(Panel.lead_user_id == person.user_id,
                       PanelMember.status == "accepted"))))
    return ImageScope(enrolments, studies)
