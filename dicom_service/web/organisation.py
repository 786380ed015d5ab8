"""Organisation REST API: networks, thematic areas, centres in networks, roles,
a person's preferences and expert groups.

Every route declares :data:`~dicom_service.web.policy.PersonDep`. Who may
change what is decided in :mod:`dicom_service.care.organisation` (platform
administrators; network coordinators for areas, non-coordinator roles and
expert groups of their network; each person for their own preferences);
handlers only translate HTTP to one service call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from dicom_service.care.organisation import AreaInfo, OrganisationService
from dicom_service.web.deps import ServicesDep
from dicom_service.web.policy import PersonDep


class Problem(BaseModel):
    """An RFC 9457 problem response (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text} for code, text in (
        (400, "a value breaks a rule (named in detail)"),
        (401, "no person is logged in"),
        (403, "the caller sees the object but may not do this"),
        (404, "no such object, or not the caller's to see"),
        (409, "the change contradicts the current state"),
    )}

router = APIRouter(prefix="/api", tags=["organisation"], responses=PROBLEMS)


def organisation(services: ServicesDep) -> OrganisationService:
    return OrganisationService(services.db)


OrganisationDep = Annotated[OrganisationService, Depends(organisation)]


class NetworkIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class NetworkOut(BaseModel):
    id: int
    name: str


class AreaIn(BaseModel):
    code: str = Field(min_length=1, max_length=32, examples=["VASCA-WG"])
    name: str = Field(min_length=1, max_length=128, examples=["Vascular Anomalies"])


class AreaOut(BaseModel):
    id: int
    network_id: int
    code: str
    name: str


class CentreJoinIn(BaseModel):
    centre_id: int


class CentreOut(BaseModel):
    id: int
    name: str


class RoleIn(BaseModel):
    user_id: int
    role: str = Field(examples=["health_professional", "guest"])
    valid_days: int | None = Field(default=None, ge=1, le=3650,
                                   description="guests: 90 when not given")


class ExtendIn(BaseModel):
    days: int = Field(default=90, ge=1, le=3650)


class RoleOut(BaseModel):
    user_id: int
    network_id: int
    role: str
    expires_at: datetime | None


class RoleListed(RoleOut):
    username: str


class PreferencesIn(BaseModel):
    area_ids: list[int] = Field(max_length=200)


class GroupIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    area_id: int | None = None


class GroupOut(BaseModel):
    id: int
    network_id: int
    name: str
    area_id: int | None
    member_ids: list[int]


class MemberIn(BaseModel):
    user_id: int


def _area(a: AreaInfo) -> AreaOut:
    return AreaOut(id=a.id, network_id=a.network_id, code=a.code, name=a.name)


# -- networks -------------------------------------------------------------------
@router.get("/networks")
def list_networks(org: OrganisationDep, _: PersonDep) -> list[NetworkOut]:
    return [NetworkOut(id=n.id, name=n.name) for n in org.list_networks()]


@router.post("/networks", status_code=201)
def add_network(body: NetworkIn, org: OrganisationDep, caller: PersonDep) -> NetworkOut:
    return NetworkOut(id=org.add_network(body.name, by=caller.person), name=body.name)


# -- thematic areas ---------------------------------------------------------------
@router.get("/networks/{network_id}/areas")
def list_areas(network_id: int, org: OrganisationDep, _: PersonDep) -> list[AreaOut]:
    return [_area(a) for a in org.list_areas(network_id)]


@router.post("/networks/{network_id}/areas", status_code=201)
def add_area(network_id: int, body: AreaIn, org: OrganisationDep,
             caller: PersonDep) -> AreaOut:
    area_id = org.add_area(network_id, body.code, body.name, by=caller.person)
    return AreaOut(id=area_id, network_id=network_id, code=body.code, name=body.name)


# -- centres in networks -------------------------------------------------------------
@router.get("/networks/{network_id}/centres")
def list_network_centres(network_id: int, org: OrganisationDep,
                         _: PersonDep) -> list[CentreOut]:
    return [CentreOut(id=i, name=n) for i, n in org.network_centres(network_id)]


@router.post("/networks/{network_id}/centres", status_code=201)
def join_network(network_id: int, body: CentreJoinIn, org: OrganisationDep,
                 caller: PersonDep) -> None:
    org.join_network(body.centre_id, network_id, by=caller.person)


@router.delete("/networks/{network_id}/centres/{centre_id}", status_code=204)
def leave_network(network_id: int, centre_id: int, org: OrganisationDep,
                  caller: PersonDep) -> None:
    org.leave_network(centre_id, network_id, by=caller.person)


# -- roles ----------------------------------------------------------------------------
@router.get("/networks/{network_id}/roles")
def list_roles(network_id: int, org: OrganisationDep, caller: PersonDep) -> list[RoleListed]:
    return [RoleListed(user_id=r.user_id, username=r.username, network_id=r.network_id,
                       role=r.role, expires_at=r.expires_at)
            for r in org.list_roles(network_id, by=caller.person)]


@router.post("/networks/{network_id}/roles", status_code=201)
def grant_role(network_id: int, body: RoleIn, org: OrganisationDep,
               caller: PersonDep) -> RoleOut:
    expires = org.grant_role(body.user_id, network_id, body.role, valid_days=body.valid_days,
                             by=caller.person)
    return RoleOut(user_id=body.user_id, network_id=network_id, role=body.role,
                   expires_at=expires)


@router.post("/networks/{network_id}/roles/{user_id}/{role}/extend")
def extend_role(network_id: int, user_id: int, role: str, body: ExtendIn,
                org: OrganisationDep, caller: PersonDep) -> RoleOut:
    expires = org.extend_role(user_id, network_id, role, days=body.days, by=caller.person)
    return RoleOut(user_id=user_id, network_id=network_id, role=role, expires_at=expires)


@router.delete("/networks/{network_id}/roles/{user_id}/{role}", status_code=204)
def revoke_role(network_id: int, user_id: int, role: str, org: OrganisationDep,
                caller: PersonDep) -> None:
    org.revoke_role(user_id, network_id, role, by=caller.person)


# -- preferences ---------------------------------------------------------------------------
@router.get("/me/preferences")
def my_preferences(org: OrganisationDep, caller: PersonDep) -> list[AreaOut]:
    return [_area(a) for a in org.preferences(caller.person.user_id)]


@router.put("/me/preferences")
def set_my_preferences(body: PreferencesIn, org: OrganisationDep,
                       caller: PersonDep) -> list[AreaOut]:
    return [_area(a) for a in org.set_preferences(caller.person.user_id, body.area_ids,
                                                  by=caller.person)]


# -- expert groups ---------------------------------------------------------------------------
@router.get("/networks/{network_id}/groups")
def list_groups(network_id: int, org: OrganisationDep, caller: PersonDep) -> list[GroupOut]:
    return [GroupOut(id=g.id, network_id=g.network_id, name=g.name, area_id=g.area_id,
                     member_ids=list(g.member_ids))
            for g in org.list_groups(network_id, by=caller.person)]


@router.post("/networks/{network_id}/groups", status_code=201)
def add_group(network_id: int, body: GroupIn, org: OrganisationDep,
              caller: PersonDep) -> GroupOut:
    group_id = org.add_group(network_id, body.name, body.area_id, by=caller.person)
    return GroupOut(id=group_id, network_id=network_id, name=body.name, area_id=body.area_id,
                    member_ids=[])


@router.post("/groups/{group_id}/members", status_code=201)
def add_group_member(group_id: int, body: MemberIn, org: OrganisationDep,
                     caller: PersonDep) -> None:
    org.add_group_member(group_id, body.user_id, by=caller.person)


@router.delete("/groups/{group_id}/members/{user_id}", status_code=204)
def remove_group_member(group_id: int, user_id: int, org: OrganisationDep,
                        caller: PersonDep) -> None:
    org.remove_group_member(group_id, user_id, by=caller.person)
