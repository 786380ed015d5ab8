"""Networks, thematic areas, centres in networks, roles, preferences and expert groups.

Who administers what (``by`` is the calling :class:`~dicom_service.care.access.Person`;
``None`` is the local operator at the command line, who holds the data
directory and so every right):

- networks: platform administrators add them; everyone logged in lists them;
- thematic areas: platform administrators and the network's coordinators add
  them; everyone logged in lists them (people choose them in preferences);
- centres joining a network: platform administrators only (membership of a
  reference network is decided outside the platform);
- roles: platform administrators grant and revoke every role; a network's
  coordinators grant, revoke and extend every role of their network except
  ``coordinator`` (they approve access requests and authorise guests). A
  guest role expires after 90 days unless extended; the list of a network's
  roles is for the same people;
- preferences: a person sets their own thematic areas, only areas of networks
  in which they hold a valid role;
- expert groups: platform administrators and the network's coordinators
  create them and add members (who must hold a role in the network); every
  person with a role in the network lists them (a panel lead invites them).

Platform administrators see no patients and no panels through this module.
Every change is audited by internal IDs and names, never a patient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from dicom_service.care import audit
from dicom_service.care.access import ROLES, Person, load_person
from dicom_service.care.enrolment import validate_name
from dicom_service.db.models import (
    Centre,
    CentreNetwork,
    ExpertGroup,
    ExpertGroupMember,
    Network,
    ThematicArea,
    User,
    UserRole,
    UserThematicArea,
    utcnow,
)
from dicom_service.db.session import Database
from dicom_service.errors import Conflict, Forbidden, NotFound

GUEST_DAYS = 90
MAX_VALID_DAYS = 3650
_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")


@dataclass(frozen=True)
class NetworkInfo:
    id: int
    name: str


@dataclass(frozen=True)
class AreaInfo:
    id: int
    network_id: int
    code: str
    name: str


@dataclass(frozen=True)
class RoleInfo:
    user_id: int
    username: str
    network_id: int
    role: str
    expires_at: datetime | None


@dataclass(frozen=True)
class GroupInfo:
    id: int
    network_id: int
    name: str
    area_id: int | None
    member_ids: tuple[int, ...]


def validate_code(value: str) -> str:
    if not _CODE_RE.match(value):
        raise ValueError("thematic area code must be 1-32 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return value


def validate_area_name(value: str) -> str:
    if not value.strip() or len(value) > 128 or any(ord(c) < 32 for c in value):
        raise ValueError("thematic area name must be 1-128 printable characters")
    return value


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return role


def _actor(by: Person | None) -> str:
    return "cli" if by is None else f"user:{by.user_id}"


def _require_admin(by: Person | None) -> None:
    if by is not None and not by.is_admin:
        raise Forbidden("only platform administrators may do this")


def _require_network_admin(by: Person | None, network_id: int) -> None:
    """Platform administrators and the network's coordinators."""
    if by is not None and not by.is_admin and not by.has_role("coordinator", network_id):
        raise Forbidden("only platform administrators and the network's coordinators "
                        "may do this")


def _require_network(s: Session, network_id: int) -> str:
    name = s.scalar(select(Network.name).where(Network.id == network_id))
    if name is None:
        raise NotFound("no such network")
    return name


def _require_user(s: Session, user_id: int) -> None:
    if s.scalar(select(User.id).where(User.id == user_id)) is None:
        raise NotFound("no such user")


class OrganisationService:
    """Administration of networks, areas, centres' memberships, roles, groups."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- look-ups by name (command line) --------------------------------------
    def _id_of(self, query: Select[int], missing: str) -> int:
        with self.db.session() as s:
            found = s.scalar(query)
        if found is None:
            raise NotFound(missing)
        return found

    def network_id(self, name: str) -> int:
        return self._id_of(select(Network.id).where(Network.name == name),
                           f"no network named {name!r}")

    def user_id(self, username: str) -> int:
        return self._id_of(select(User.id).where(User.username == username), "no such user")

    def area_id(self, network_id: int, code: str) -> int:
        return self._id_of(select(ThematicArea.id).where(ThematicArea.network_id == network_id,
                                                         ThematicArea.code == code),
                           f"no thematic area {code!r} in this network")

    def area_ids(self, codes: list[str], network_id: int | None = None) -> list[int]:
        """The areas with these codes (in ``network_id``, or in whichever network
        has the code; a code found in several networks needs ``network_id``)."""
        out = []
        with self.db.session() as s:
            for code in codes:
                query = select(ThematicArea.id).where(ThematicArea.code == code)
                if network_id is not None:
                    query = query.where(ThematicArea.network_id == network_id)
                found = list(s.scalars(query))
                if not found:
                    raise NotFound(f"no thematic area {code!r}")
                if len(found) > 1:
                    raise ValueError(f"thematic area {code!r} exists in several networks; "
                                     "name the network")
                out.append(found[0])
        return out

    def group_id(self, network_id: int, name: str) -> int:
        return self._id_of(select(ExpertGroup.id).where(ExpertGroup.network_id == network_id,
                                                        ExpertGroup.name == name),
                           f"no expert group {name!r} in this network")

    # -- networks --------------------------------------------------------------
    def add_network(self, name: str, *, by: Person | None) -> int:
        _require_admin(by)
        validate_name(name, "network name")
        with self.db.session() as s:
            if s.scalar(select(Network.id).where(Network.name == name)) is not None:
                raise Conflict(f"network {name!r} exists already")
            network = Network(name=name)
            s.add(network)
            s.flush()
            audit.record(s, actor=_actor(by), action="network.add", object_type="network",
                         object_id=str(network.id), detail=f"name={name}")
            return network.id

    def list_networks(self) -> list[NetworkInfo]:
        with self.db.session() as s:
            return [NetworkInfo(i, n) for i, n in
                    s.execute(select(Network.id, Network.name).order_by(Network.name))]

    # -- thematic areas ----------------------------------------------------------
    def add_area(self, network_id: int, code: str, name: str, *, by: Person | None) -> int:
        _require_network_admin(by, network_id)
        validate_code(code)
        validate_area_name(name)
        with self.db.session() as s:
            _require_network(s, network_id)
            if s.scalar(select(ThematicArea.id).where(ThematicArea.network_id == network_id,
                                                      ThematicArea.code == code)) is not None:
                raise Conflict(f"thematic area {code!r} exists already in this network")
            area = ThematicArea(network_id=network_id, code=code, name=name)
            s.add(area)
            s.flush()
            audit.record(s, actor=_actor(by), action="area.add", object_type="thematic_area",
                         object_id=str(area.id), detail=f"network={network_id} code={code}")
            return area.id

    def list_areas(self, network_id: int) -> list[AreaInfo]:
        with self.db.session() as s:
            _require_network(s, network_id)
            rows = s.execute(select(ThematicArea.id, ThematicArea.network_id, ThematicArea.code,
                                    ThematicArea.name)
                             .where(ThematicArea.network_id == network_id)
                             .order_by(ThematicArea.code)).all()
        return [AreaInfo(*r) for r in rows]

    # -- centres in networks -------------------------------------------------------
    def join_network(self, centre_id: int, network_id: int, *, by: Person | None) -> None:
        _require_admin(by)
        with self.db.session() as s:
            _require_network(s, network_id)
            if s.scalar(select(Centre.id).where(Centre.id == centre_id)) is None:
                raise NotFound("no such centre")
            if s.get(CentreNetwork, (centre_id, network_id)) is not None:
                raise Conflict("the centre is a member of this network already")
            s.add(CentreNetwork(centre_id=centre_id, network_id=network_id))
            audit.record(s, actor=_actor(by), action="centre.join", object_type="centre",
                         object_id=str(centre_id), detail=f"network={network_id}")

    def leave_network(self, centre_id: int, network_id: int, *, by: Person | None) -> None:
        _require_admin(by)
        with self.db.session() as s:
            n = s.execute(delete(CentreNetwork).where(
                CentreNetwork.centre_id == centre_id,
                CentreNetwork.network_id == network_id)).rowcount  # type: ignore[attr-defined]
            if not n:
                raise NotFound("the centre is not a member of this network")
            audit.record(s, actor=_actor(by), action="centre.leave", object_type="centre",
                         object_id=str(centre_id), detail=f"network={network_id}")

    def network_centres(self, network_id: int) -> list[tuple[int, str]]:
        """(centre ID, name) of the network's member centres."""
        with self.db.session() as s:
            _require_network(s, network_id)
            return [(i, n) for i, n in s.execute(
                select(Centre.id, Centre.name)
                .join(CentreNetwork, CentreNetwork.centre_id == Centre.id)
                .where(CentreNetwork.network_id == network_id).order_by(Centre.name))]

    # -- roles -------------------------------------------------------------------------
    def _check_role_admin(self, by: Person | None, network_id: int, role: str) -> None:
        if role == "coordinator":
            _require_admin(by)
        else:
            _require_network_admin(by, network_id)

    def grant_role(self, user_id: int, network_id: int, role: str, *,
                   valid_days: int | None = None, by: Person | None) -> datetime | None:
        """Grant ``role`` in the network; return when it expires (``None``: never).

        A guest role always expires: after ``valid_days`` or 90 days. Other roles
        expire only when ``valid_days`` is given. Granting a role the person holds
        already sets its new expiry.
        """
        validate_role(role)
        self._check_role_admin(by, network_id, role)
        if valid_days is not None and not 1 <= valid_days <= MAX_VALID_DAYS:
            raise ValueError(f'"valid_days" must be between 1 and {MAX_VALID_DAYS}')
        if role == "guest" and valid_days is None:
            valid_days = GUEST_DAYS
        expires = utcnow() + timedelta(days=valid_days) if valid_days else None
        with self.db.session() as s:
            _require_network(s, network_id)
            _require_user(s, user_id)
            row = s.scalar(select(UserRole).where(UserRole.user_id == user_id,
                                                  UserRole.network_id == network_id,
                                                  UserRole.role == role))
            if row is None:
                s.add(UserRole(user_id=user_id, network_id=network_id, role=role,
                               expires_at=expires))
            else:
                row.expires_at = expires
            audit.record(s, actor=_actor(by), action="role.grant", object_type="user",
                         object_id=str(user_id),
                         detail=f"network={network_id} role={role} "
                                f"expires={expires.date().isoformat() if expires else 'never'}")
        return expires

    def extend_role(self, user_id: int, network_id: int, role: str, *,
                    days: int = GUEST_DAYS, by: Person | None) -> datetime:
        """Extend an expiring role (a guest's) to ``days`` from now; return the new expiry.

        An expired role may be extended too: that is how a coordinator renews a guest.
        """
        validate_role(role)
        self._check_role_admin(by, network_id, role)
        if not 1 <= days <= MAX_VALID_DAYS:
            raise ValueError(f'"days" must be between 1 and {MAX_VALID_DAYS}')
        expires = utcnow() + timedelta(days=days)
        with self.db.session() as s:
            row = s.scalar(select(UserRole).where(UserRole.user_id == user_id,
                                                  UserRole.network_id == network_id,
                                                  UserRole.role == role))
            if row is None:
                raise NotFound("the person holds no such role in this network")
            if row.expires_at is None:
                raise Conflict("this role does not expire; there is nothing to extend")
            row.expires_at = expires
            audit.record(s, actor=_actor(by), action="role.extend", object_type="user",
                         object_id=str(user_id),
                         detail=f"network={network_id} role={role} "
                                f"expires={expires.date().isoformat()}")
        return expires

    def revoke_role(self, user_id: int, network_id: int, role: str, *,
                    by: Person | None) -> None:
        validate_role(role)
        self._check_role_admin(by, network_id, role)
        with self.db.session() as s:
            n = s.execute(delete(UserRole).where(
                UserRole.user_id == user_id, UserRole.network_id == network_id,
                UserRole.role == role)).rowcount  # type: ignore[attr-defined]
            if not n:
                raise NotFound("the person holds no such role in this network")
            audit.record(s, actor=_actor(by), action="role.revoke", object_type="user",
                         object_id=str(user_id), detail=f"network={network_id} role={role}")

    def list_roles(self, network_id: int, *, by: Person | None) -> list[RoleInfo]:
        _require_network_admin(by, network_id)
        with self.db.session() as s:
            _require_network(s, network_id)
            rows = s.execute(select(UserRole.user_id, User.username, UserRole.network_id,
                                    UserRole.role, UserRole.expires_at)
                             .join(User, User.id == UserRole.user_id)
                             .where(UserRole.network_id == network_id)
                             .order_by(User.username, UserRole.role)).all()
        return [RoleInfo(*r) for r in rows]

    # -- preferences -------------------------------------------------------------------
    def set_preferences(self, user_id: int, area_ids: list[int], *,
                        by: Person | None) -> list[AreaInfo]:
        """Replace the person's thematic areas; each must belong to a network in
        which they hold a valid role. Only the person themselves (or the
        operator) sets them."""
        if by is not None and by.user_id != user_id:
            raise Forbidden("a person sets only their own preferences")
        wanted = sorted(set(area_ids))
        with self.db.session() as s:
            _require_user(s, user_id)
            areas = [AreaInfo(*r) for r in s.execute(
                select(ThematicArea.id, ThematicArea.network_id, ThematicArea.code,
                       ThematicArea.name).where(ThematicArea.id.in_(wanted)))]
            if len(areas) != len(wanted):
                raise NotFound("no such thematic area")
            networks = _valid_networks(s, user_id)
            if any(a.network_id not in networks for a in areas):
                raise Conflict("a thematic area can be chosen only in a network in which "
                               "the person holds a valid role")
            s.execute(delete(UserThematicArea).where(UserThematicArea.user_id == user_id))
            s.add_all(UserThematicArea(user_id=user_id, area_id=a.id) for a in areas)
            audit.record(s, actor=_actor(by), action="preferences.set", object_type="user",
                         object_id=str(user_id),
                         detail="areas=" + ",".join(str(a.id) for a in areas))
        return sorted(areas, key=lambda a: (a.network_id, a.code))

    def preferences(self, user_id: int) -> list[AreaInfo]:
        with self.db.session() as s:
            rows = s.execute(select(ThematicArea.id, ThematicArea.network_id, ThematicArea.code,
                                    ThematicArea.name)
                             .join(UserThematicArea, UserThematicArea.area_id == ThematicArea.id)
                             .where(UserThematicArea.user_id == user_id)
                             .order_by(ThematicArea.network_id, ThematicArea.code)).all()
        return [AreaInfo(*r) for r in rows]

    # -- expert groups -------------------------------------------------------------------
    def add_group(self, network_id: int, name: str, area_id: int | None = None, *,
                  by: Person | None) -> int:
        _require_network_admin(by, network_id)
        validate_name(name, "expert group name")
        with self.db.session() as s:
            _require_network(s, network_id)
            if area_id is not None and s.scalar(select(ThematicArea.network_id).where(
                    ThematicArea.id == area_id)) != network_id:
                raise NotFound("no such thematic area in this network")
            if s.scalar(select(ExpertGroup.id).where(ExpertGroup.network_id == network_id,
                                                     ExpertGroup.name == name)) is not None:
                raise Conflict(f"expert group {name!r} exists already in this network")
            group = ExpertGroup(network_id=network_id, name=name, area_id=area_id)
            s.add(group)
            s.flush()
            audit.record(s, actor=_actor(by), action="group.add", object_type="expert_group",
                         object_id=str(group.id), detail=f"network={network_id}")
            return group.id

    def add_group_member(self, group_id: int, user_id: int, *, by: Person | None) -> None:
        with self.db.session() as s:
            network_id = s.scalar(select(ExpertGroup.network_id)
                                  .where(ExpertGroup.id == group_id))
            if network_id is None:
                raise NotFound("no such expert group")
            _require_network_admin(by, network_id)
            _require_user(s, user_id)
            if network_id not in _valid_networks(s, user_id):
                raise Conflict("a member of an expert group must hold a valid role in "
                               "the group's network")
            if s.get(ExpertGroupMember, (group_id, user_id)) is not None:
                raise Conflict("the person is a member of this group already")
            s.add(ExpertGroupMember(group_id=group_id, user_id=user_id))
            audit.record(s, actor=_actor(by), action="group.add_member",
                         object_type="expert_group", object_id=str(group_id),
                         detail=f"user={user_id}")

    def remove_group_member(self, group_id: int, user_id: int, *, by: Person | None) -> None:
        with self.db.session() as s:
            network_id = s.scalar(select(ExpertGroup.network_id)
                                  .where(ExpertGroup.id == group_id))
            if network_id is None:
                raise NotFound("no such expert group")
            _require_network_admin(by, network_id)
            n = s.execute(delete(ExpertGroupMember).where(
                ExpertGroupMember.group_id == group_id,
                ExpertGroupMember.user_id == user_id)).rowcount  # type: ignore[attr-defined]
            if not n:
                raise NotFound("the person is not a member of this group")
            audit.record(s, actor=_actor(by), action="group.remove_member",
                         object_type="expert_group", object_id=str(group_id),
                         detail=f"user={user_id}")

    def list_groups(self, network_id: int, *, by: Person | None) -> list[GroupInfo]:
        if by is not None and not by.is_admin and network_id not in by.networks():
            raise Forbidden("only people with a role in the network see its expert groups")
        with self.db.session() as s:
            _require_network(s, network_id)
            groups = s.execute(select(ExpertGroup.id, ExpertGroup.network_id, ExpertGroup.name,
                                      ExpertGroup.area_id)
                               .where(ExpertGroup.network_id == network_id)
                               .order_by(ExpertGroup.name)).all()
            members: dict[int, list[int]] = {}
            for gid, uid in s.execute(select(ExpertGroupMember.group_id,
                                             ExpertGroupMember.user_id)
                                      .order_by(ExpertGroupMember.user_id)):
                members.setdefault(gid, []).append(uid)
        return [GroupInfo(g, n, name, a, tuple(members.get(g, ()))) for g, n, name, a in groups]


def _valid_networks(s: Session, user_id: int) -> frozenset[int]:
    """Networks in which ``user_id`` holds a role that has not expired (the
    access policy's own reading of roles)."""
    person = load_person(s.connection(), user_id)
    return person.networks() if person is not None else frozenset()
