"""Administrator REST API: centres, peers, enrolments, consent.

Protected by the administrator token from configuration until people and
roles replace it. Request bodies may carry a patient's local identifier (at
enrolment); it is hashed with the server secret and never stored or logged.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dicom_service.web.deps import ServicesDep
from dicom_service.web.policy import AdminDep

router = APIRouter(prefix="/api", tags=["administration"])


class CentreIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class PeerIn(BaseModel):
    ae_title: str = Field(min_length=1, max_length=16)
    centre: str
    host: str | None = None


class PeerOut(BaseModel):
    ae_title: str
    host: str | None
    centre: str


class EnrolmentIn(BaseModel):
    centre: str
    patient_id: str = Field(min_length=1, max_length=64)
    issuer: str | None = Field(default=None, max_length=64)
    consent_registries: bool = False
    consent_research: bool = False


class EnrolmentOut(BaseModel):
    pseudonym: str


class WithdrawalOut(BaseModel):
    pseudonym: str
    instances_removed: int


@router.get("/centres")
def list_centres(services: ServicesDep, _: AdminDep) -> list[str]:
    return services.care.list_centres()


@router.post("/centres", status_code=201)
def add_centre(body: CentreIn, services: ServicesDep, actor: AdminDep) -> dict[str, str]:
    services.care.add_centre(body.name, actor=actor)
    return {"name": body.name}


@router.get("/peers")
def list_peers(services: ServicesDep, _: AdminDep) -> list[PeerOut]:
    return [PeerOut(ae_title=p.ae_title, host=p.host, centre=p.centre)
            for p in services.care.list_peers()]


@router.post("/peers", status_code=201)
def add_peer(body: PeerIn, services: ServicesDep, actor: AdminDep) -> PeerOut:
    services.care.add_peer(body.ae_title, body.centre, body.host, actor=actor)
    return PeerOut(ae_title=body.ae_title, host=body.host, centre=body.centre)


@router.delete("/peers/{ae_title}", status_code=204)
def remove_peer(ae_title: str, services: ServicesDep, actor: AdminDep) -> None:
    services.care.remove_peer(ae_title, actor=actor)


@router.post("/enrolments", status_code=201)
def enrol(body: EnrolmentIn, services: ServicesDep, actor: AdminDep) -> EnrolmentOut:
    pseudonym = services.care.enrol(body.centre, body.patient_id, body.issuer,
                                    consent_registries=body.consent_registries,
                                    consent_research=body.consent_research, actor=actor)
    return EnrolmentOut(pseudonym=pseudonym)


@router.post("/enrolments/{pseudonym}/consent/withdraw")
def withdraw(pseudonym: str, services: ServicesDep, actor: AdminDep) -> WithdrawalOut:
    removed = services.care.withdraw_consent(pseudonym, actor=actor)
    return WithdrawalOut(pseudonym=pseudonym, instances_removed=removed)
