"""Viewer annotations a panel's members share: lengths, angles, arrows, texts.

Stored per panel (table ``annotations``), in image coordinates of one frame of
one instance of a study the panel shares. Everyone who reads the panel's images
(:func:`dicom_service.care.access.panel_view` with ``images``) sees every
member's annotations; writing is open while the panel is in one of
``ACTIVE_STATES`` (409 afterwards). A person deletes their own annotations; the
panel lead any. Every write is audited (kind and IDs only, never the text).

Routes:

- ``GET /api/panels/{panel_id}/annotations[?study=&series=]``
- ``POST /api/panels/{panel_id}/annotations`` -> 201
- ``DELETE /api/panels/{panel_id}/annotations/{annotation_id}`` -> 204
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from dicom_service.care import audit
from dicom_service.care.access import ACTIVE_STATES, PanelView, panel_view
from dicom_service.db.models import Annotation, PanelStudy, User, utcnow
from dicom_service.dicom.uids import validate_uid
from dicom_service.errors import Conflict, Forbidden, NotFound
from dicom_service.web.deps import ServicesDep
from dicom_service.web.policy import Caller, PersonDep

router = APIRouter(prefix="/api/panels", tags=["annotations"])

Kind = Literal["length", "angle", "arrow", "text"]
# how many points each kind has (a text is anchored at one point)
POINTS = {"length": 2, "angle": 3, "arrow": 2, "text": 1}
# image coordinates: generous bounds for the largest images DICOM allows
MAX_COORDINATE = 65536.0
MAX_TEXT = 500
MAX_FRAME = 100_000


class AnnotationIn(BaseModel):
    study_uid: str
    series_uid: str
    sop_uid: str
    frame: int = Field(default=1, ge=1, le=MAX_FRAME)
    kind: Kind
    points: list[tuple[float, float]] = Field(min_length=1, max_length=3)
    text: str = Field(default="", max_length=MAX_TEXT)

    @field_validator("study_uid", "series_uid", "sop_uid")
    @classmethod
    def _uid(cls, value: str) -> str:
        return validate_uid(value, "annotation UID")

    @field_validator("points")
    @classmethod
    def _points(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for x, y in value:
            if not (math.isfinite(x) and math.isfinite(y)
                    and -MAX_COORDINATE <= x <= MAX_COORDINATE
                    and -MAX_COORDINATE <= y <= MAX_COORDINATE):
                raise ValueError("annotation points must be finite image coordinates")
        return value


class AnnotationOut(BaseModel):
    id: int
    study_uid: str
    series_uid: str
    sop_uid: str
    frame: int
    kind: str
    points: list[tuple[float, float]]
    text: str
    author: str
    mine: bool
    created_at: datetime


def _visible(conn: Connection, caller: Caller, panel_id: int) -> PanelView:
    """The caller's view of a panel whose images they read; 404 otherwise."""
    view = panel_view(conn, caller.person, panel_id)
    if view is None or not view.images:
        raise NotFound("no such panel")
    return view


def _out(row: Annotation, author: str, caller: Caller) -> AnnotationOut:
    data = json.loads(row.data)
    return AnnotationOut(id=row.id, study_uid=row.study_uid, series_uid=row.series_uid,
                         sop_uid=row.sop_uid, frame=row.frame, kind=row.kind,
                         points=[(float(x), float(y)) for x, y in data["points"]],
                         text=str(data.get("text", "")), author=author,
                         mine=row.author_id == caller.person.user_id,
                         created_at=row.created_at)


@router.get("/{panel_id}/annotations")
def list_annotations(panel_id: int, caller: PersonDep, services: ServicesDep,
                     study: Annotated[str | None, Query()] = None,
                     series: Annotated[str | None, Query()] = None) -> list[AnnotationOut]:
    """Every member's live annotations of the studies the panel shares, oldest first."""
    query = (select(Annotation, User.display_name)
             .join(User, User.id == Annotation.author_id)
             # a study no longer shared takes its annotations out of view with it
             .join(PanelStudy, (PanelStudy.panel_id == Annotation.panel_id)
                   & (PanelStudy.study_uid == Annotation.study_uid))
             .where(Annotation.panel_id == panel_id, Annotation.deleted_at.is_(None))
             .order_by(Annotation.id))
    if study is not None:
        query = query.where(Annotation.study_uid == validate_uid(study, "study"))
    if series is not None:
        query = query.where(Annotation.series_uid == validate_uid(series, "series"))
    with services.db.session() as s:
        _visible(s.connection(), caller, panel_id)
        return [_out(row, author, caller) for row, author in s.execute(query).all()]


def _writable(s: Session, caller: Caller, panel_id: int) -> PanelView:
    view = _visible(s.connection(), caller, panel_id)
    if view.state not in ACTIVE_STATES:
        raise Conflict("annotations can be changed only while the panel is active")
    return view


@router.post("/{panel_id}/annotations", status_code=201)
def add_annotation(panel_id: int, body: AnnotationIn, caller: PersonDep,
                   services: ServicesDep) -> AnnotationOut:
    """Add an annotation to a study the panel shares; 404 for any other study."""
    if len(body.points) != POINTS[body.kind]:
        raise ValueError(f"a {body.kind} annotation has {POINTS[body.kind]} point(s)")
    if body.kind == "text" and not body.text.strip():
        raise ValueError("a text annotation needs a text")
    with services.db.write_lock(), services.db.session() as s:
        _writable(s, caller, panel_id)
        shared = s.scalar(select(PanelStudy.study_uid).where(
            PanelStudy.panel_id == panel_id, PanelStudy.study_uid == body.study_uid))
        if shared is None:
            raise NotFound("the study is not shared in this panel")
        row = Annotation(panel_id=panel_id, study_uid=body.study_uid,
                         series_uid=body.series_uid, sop_uid=body.sop_uid, frame=body.frame,
                         author_id=caller.person.user_id, kind=body.kind,
                         data=json.dumps({"points": body.points, "text": body.text}),
                         created_at=utcnow())
        s.add(row)
        s.flush()
        audit.record(s, actor=caller.principal.actor, action="annotation.add",
                     object_type="panel", object_id=str(panel_id),
                     detail=f"annotation {row.id} ({body.kind})")
        author = s.scalar(select(User.display_name).where(User.id == caller.person.user_id))
        return _out(row, author or "", caller)


@router.delete("/{panel_id}/annotations/{annotation_id}", status_code=204)
def delete_annotation(panel_id: int, annotation_id: int, caller: PersonDep,
                      services: ServicesDep) -> Response:
    """Delete an annotation: its author or the panel lead (403 for other members)."""
    with services.db.write_lock(), services.db.session() as s:
        view = _writable(s, caller, panel_id)
        row = s.scalar(select(Annotation).where(Annotation.id == annotation_id,
                                                Annotation.panel_id == panel_id,
                                                Annotation.deleted_at.is_(None)))
        if row is None:
            raise NotFound("no such annotation")
        if row.author_id != caller.person.user_id and not view.is_lead:
            raise Forbidden("only the author or the panel lead may delete an annotation")
        row.deleted_at = utcnow()
        audit.record(s, actor=caller.principal.actor, action="annotation.delete",
                     object_type="panel", object_id=str(panel_id),
                     detail=f"annotation {annotation_id} ({row.kind})")
    return Response(status_code=204)
