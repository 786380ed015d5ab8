"""Centres, peers, enrolments and consent (the minimal core; panels extend it).

An enrolment belongs to one centre and has a random pseudonym. The patient's
local identifier is never stored: only a keyed hash of issuer + patient ID,
through which incoming instances are matched.

A health professional (or dispatcher) enrols patients of their own centre
(:meth:`CareService.enrol_by`) and sees and changes only those enrolments;
another centre's enrolment is :class:`NotFound`. Every consent given or
withdrawn (care, registries, research) is a :class:`ConsentRecord` with who
and on which form version. Withdrawing consent for care erases the images,
revokes the enrolment's access tokens and closes its open panels.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from dicom_service.care import audit
from dicom_service.care.access import Person
from dicom_service.care.keys import enrolment_key, new_pseudonym, new_salt, patient_hash
from dicom_service.db.models import (
    AccessToken,
    Annotation,
    Centre,
    ConsentRecord,
    Enrolment,
    Instance,
    Panel,
    PanelRound,
    PanelStudy,
    Peer,
    Series,
    Study,
    utcnow,
)
from dicom_service.db.prepared import CompiledStatement, dbapi_cursor
from dicom_service.db.session import Database
from dicom_service.deidentify import Pseudonymiser, derive_date_shift
from dicom_service.errors import Conflict, Forbidden, NotFound
from dicom_service.storage.base import InstanceStore

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_PSEUDONYM_RE = re.compile(r"^ERN-[0-9A-Z]{10}$")
_CACHE_LIMIT = 10_000
# the columns of EnrolmentInfo, in its field order
_ENROLMENT_INFO = (Enrolment.id, Enrolment.pseudonym, Enrolment.centre_id,
                   Enrolment.consent_care, Enrolment.key_salt)
_SUMMARY = (Enrolment.id, Enrolment.pseudonym, Enrolment.centre_id, Enrolment.consent_care,
            Enrolment.consent_registries, Enrolment.consent_research, Enrolment.created_at,
            Enrolment.withdrawn_at)
CONSENT_KINDS = ("care", "registries", "research")
_FORM_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")
# what a panel closed by a withdrawal says in place of an outcome
WITHDRAWAL_NOTE = "Closed: the patient withdrew consent for care; the shared images were erased."
_CONSENT_OF = select(Enrolment.consent_care).where(Enrolment.id == bindparam("b_id"))
# the same compiled once for SQLite's DB-API cursor: a tenth of the Core
# statement's cost, on the path of every ingested instance
_SQLITE_CONSENT_OF = CompiledStatement(_CONSENT_OF, sqlite.dialect())


@dataclass(frozen=True)
class PeerInfo:
    ae_title: str
    host: str | None
    centre_id: int
    centre: str


@dataclass(frozen=True)
class EnrolmentInfo:
    id: int
    pseudonym: str
    centre_id: int
    consent_care: bool
    key_salt: bytes


@dataclass(frozen=True)
class EnrolmentSummary:
    """What a clinician of the centre sees of an enrolment: never a patient ID."""

    id: int
    pseudonym: str
    centre_id: int
    consent_care: bool
    consent_registries: bool
    consent_research: bool
    created_at: datetime
    withdrawn_at: datetime | None


@dataclass(frozen=True)
class ConsentEntry:
    kind: str
    granted: bool
    recorded_by: str
    form_version: str | None
    recorded_at: datetime


def validate_form_version(value: str | None) -> str | None:
    if value is not None and not _FORM_VERSION_RE.match(value):
        raise ValueError("form version must be 1-32 letters, digits, '_', '.' or '-'")
    return value


def validate_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{what} must be 1-64 letters, digits, space, '_', '.' or '-', "
                         "starting with a letter or digit")
    return value


def validate_ae_title(value: str) -> str:
    if not _AE_RE.match(value) or value.strip() != value:
        raise ValueError("AE title must be 1-16 printable characters without backslash "
                         "or surrounding spaces (PS3.5 AE)")
    return value


def validate_pseudonym(value: str) -> str:
    if not _PSEUDONYM_RE.match(value):
        raise ValueError("pseudonym must look like ERN- followed by 10 characters")
    return value


class CareService:
    """Administrative operations on centres, peers, enrolments and consent."""

    def __init__(self, db: Database, store: InstanceStore, server_secret: bytes) -> None:
        self.db = db
        self.store = store
        self._secret = server_secret
        audit.use_key(db, server_secret)  # every audit row of this database is chained
        # immutable facts only; consent is always read from the database
        self._enrolments: dict[tuple[int, str], EnrolmentInfo] = {}
        self._pseudonymisers: dict[int, Pseudonymiser] = {}

    # -- centres -----------------------------------------------------------
    def add_centre(self, name: str, *, actor: str) -> int:
        validate_name(name, "centre name")
        with self.db.session() as s:
            if s.scalar(select(Centre.id).where(Centre.name == name)) is not None:
                raise Conflict(f"centre {name!r} exists already")
            centre = Centre(name=name)
            s.add(centre)
            s.flush()
            audit.record(s, actor=actor, action="centre.add", object_type="centre",
                         object_id=name)
            return centre.id

    def list_centres(self) -> list[str]:
        with self.db.session() as s:
            return list(s.scalars(select(Centre.name).order_by(Centre.name)))

    def centre_id(self, name: str) -> int:
        """The internal ID of the centre called ``name``; :class:`NotFound` if none."""
        with self.db.session() as s:
            cid = s.scalar(select(Centre.id).where(Centre.name == name))
        if cid is None:
            raise NotFound(f"no centre named {name!r}")
        return cid

    # -- peers -------------------------------------------------------------
    def add_peer(self, ae_title: str, centre: str, host: str | None, *, actor: str) -> None:
        validate_ae_title(ae_title)
        cid = self.centre_id(centre)
        with self.db.session() as s:
            if s.scalar(select(Peer.id).where(Peer.ae_title == ae_title)) is not None:
                raise Conflict(f"peer {ae_title!r} exists already")
            s.add(Peer(ae_title=ae_title, host=host, centre_id=cid))
            audit.record(s, actor=actor, action="peer.add", object_type="peer",
                         object_id=ae_title, detail=f"centre={centre}")

    def remove_peer(self, ae_title: str, *, actor: str) -> None:
        with self.db.session() as s:
            n = s.execute(delete(Peer).where(Peer.ae_title == ae_title)).rowcount  # type: ignore[attr-defined]
            if not n:
                raise NotFound(f"no peer {ae_title!r}")
            audit.record(s, actor=actor, action="peer.remove", object_type="peer",
                         object_id=ae_title)

    def list_peers(self) -> list[PeerInfo]:
        with self.db.session() as s:
            rows = s.execute(select(Peer.ae_title, Peer.host, Centre.id, Centre.name)
                             .join(Centre, Centre.id == Peer.centre_id)
                             .order_by(Peer.ae_title)).all()
        return [PeerInfo(a, h, c, n) for a, h, c, n in rows]

    def find_peer(self, ae_title: str, host: str | None) -> PeerInfo | None:
        """The registered peer for a calling AE title (and source address, if bound)."""
        with self.db.session() as s:
            row = s.execute(select(Peer.ae_title, Peer.host, Centre.id, Centre.name)
                            .join(Centre, Centre.id == Peer.centre_id)
                            .where(Peer.ae_title == ae_title)).first()
        if row is None:
            return None
        peer = PeerInfo(*row)
        if peer.host is not None and peer.host != host:
            return None
        return peer

    # -- enrolments --------------------------------------------------------
    def enrol(self, centre: str, patient_id: str, issuer: str | None = None, *,
              consent_registries: bool = False, consent_research: bool = False,
              form_version: str | None = None, actor: str) -> str:
        """Enrol a patient of ``centre`` with consent for care; return the pseudonym.

        The three consents are recorded (:class:`ConsentRecord`) with ``actor``
        and ``form_version``; the patient ID only enters the keyed hash.
        """
        return self._enrol(self.centre_id(centre), centre, patient_id, issuer,
                           consent_registries=consent_registries,
                           consent_research=consent_research, form_version=form_version,
                           actor=actor)

    def enrol_by(self, person: Person, patient_id: str, issuer: str | None = None, *,
                 consent_care: bool, consent_registries: bool = False,
                 consent_research: bool = False, form_version: str | None = None,
                 actor: str) -> str:
        """A clinician (health professional or dispatcher) enrols a patient of
        their own centre. Consent for care is mandatory: refused without it."""
        if not person.is_clinician or person.centre_id is None:
            raise Forbidden("only health professionals of a centre enrol its patients")
        if not consent_care:
            raise ValueError("consent for care is mandatory before enrolment")
        with self.db.session() as s:
            centre = s.scalar(select(Centre.name).where(Centre.id == person.centre_id))
        if centre is None:
            raise NotFound("no such centre")
        return self._enrol(person.centre_id, centre, patient_id, issuer,
                           consent_registries=consent_registries,
                           consent_research=consent_research, form_version=form_version,
                           actor=actor)

    def _enrol(self, cid: int, centre: str, patient_id: str, issuer: str | None, *,
               consent_registries: bool, consent_research: bool, form_version: str | None,
               actor: str) -> str:
        if not patient_id.strip() or len(patient_id) > 64:
            raise ValueError("patient ID must be 1-64 characters")
        if issuer is not None and len(issuer) > 64:
            raise ValueError("issuer must be at most 64 characters")
        validate_form_version(form_version)
        phash = patient_hash(self._secret, issuer, patient_id)
        with self.db.session() as s:
            if s.scalar(select(Enrolment.id).where(Enrolment.centre_id == cid,
                                                   Enrolment.patient_hash == phash)) is not None:
                raise Conflict("this patient is already enrolled at this centre")
            pseudonym = new_pseudonym()
            enrolment = Enrolment(pseudonym=pseudonym, centre_id=cid, patient_hash=phash,
                                  key_salt=new_salt(), consent_care=True,
                                  consent_registries=consent_registries,
                                  consent_research=consent_research)
            s.add(enrolment)
            s.flush()
            for kind, granted in (("care", True), ("registries", consent_registries),
                                  ("research", consent_research)):
                s.add(ConsentRecord(enrolment_id=enrolment.id, kind=kind, granted=granted,
                                    recorded_by=actor, form_version=form_version))
            audit.record(s, actor=actor, action="enrolment.create", object_type="enrolment",
                         object_id=pseudonym,
                         detail=f"centre={centre} consent=care"
                         f"{',registries' if consent_registries else ''}"
                         f"{',research' if consent_research else ''}")
        return pseudonym

    def centre_enrolments(self, person: Person) -> list[EnrolmentSummary]:
        """The enrolments of the clinician's own centre (never a patient ID)."""
        if not person.is_clinician:
            raise Forbidden("only health professionals see their centre's enrolments")
        with self.db.session() as s:
            rows = s.execute(select(*_SUMMARY).where(Enrolment.centre_id == person.centre_id)
                             .order_by(Enrolment.created_at, Enrolment.id)).all()
        return [EnrolmentSummary(*r) for r in rows]

    def enrolment_of(self, person: Person, pseudonym: str) -> EnrolmentSummary:
        """One enrolment of the clinician's own centre; :class:`NotFound` for any
        other (it is not theirs to see)."""
        validate_pseudonym(pseudonym)
        with self.db.session() as s:
            row = s.execute(select(*_SUMMARY).where(Enrolment.pseudonym == pseudonym)).first()
        if row is None or not person.is_clinician or row.centre_id != person.centre_id:
            raise NotFound("no such enrolment")
        return EnrolmentSummary(*row)

    def consent_history(self, person: Person, pseudonym: str) -> list[ConsentEntry]:
        """Every consent recorded for an enrolment of the clinician's centre, oldest first."""
        enrolment = self.enrolment_of(person, pseudonym)
        with self.db.session() as s:
            rows = s.execute(select(ConsentRecord.kind, ConsentRecord.granted,
                                    ConsentRecord.recorded_by, ConsentRecord.form_version,
                                    ConsentRecord.recorded_at)
                             .where(ConsentRecord.enrolment_id == enrolment.id)
                             .order_by(ConsentRecord.id)).all()
        return [ConsentEntry(*r) for r in rows]

    def change_consent(self, person: Person, pseudonym: str, kind: str, granted: bool, *,
                       form_version: str | None = None, actor: str) -> EnrolmentSummary:
        """A clinician of the enrolment's centre records a consent change.

        Registries and research are granted or withdrawn freely. Withdrawing
        consent for care erases the images and closes the panels
        (:meth:`withdraw_consent`); granting it again re-opens the enrolment to
        new images (nothing erased comes back).
        """
        if kind not in CONSENT_KINDS:
            raise ValueError(f"consent kind must be one of {', '.join(CONSENT_KINDS)}")
        validate_form_version(form_version)
        enrolment = self.enrolment_of(person, pseudonym)
        if kind == "care" and not granted:
            self.withdraw_consent(pseudonym, actor=actor, form_version=form_version)
            return self.enrolment_of(person, pseudonym)
        with self.db.session() as s:
            row = s.get(Enrolment, enrolment.id)
            if row is None:  # pragma: no cover - removed between the two reads
                raise NotFound("no such enrolment")
            setattr(row, f"consent_{kind}", granted)
            if kind == "care":
                row.withdrawn_at = None
            s.add(ConsentRecord(enrolment_id=row.id, kind=kind, granted=granted,
                                recorded_by=actor, form_version=form_version))
            audit.record(s, actor=actor,
                         action=f"consent.{'grant' if granted else 'withdraw'}",
                         object_type="enrolment", object_id=pseudonym, detail=f"kind={kind}")
        return self.enrolment_of(person, pseudonym)

    def find_enrolment(self, centre_id: int, issuer: str | None,
                       patient_id: str) -> EnrolmentInfo | None:
        """Match an incoming instance to an enrolment of the sending centre.

        The match is exact on issuer + patient ID: an instance that carries an
        IssuerOfPatientID matches only an enrolment registered with that issuer,
        so two patients who share an ID under different issuers are never mixed.
        The enrolment's identity (ID, pseudonym, key salt) never changes and is
        cached; its consent is read fresh every time.
        """
        with self.db.engine.connect() as conn:
            return self.find_enrolment_on(conn, centre_id, issuer, patient_id)

    def find_enrolment_on(self, conn: Connection, centre_id: int, issuer: str | None,
                          patient_id: str) -> EnrolmentInfo | None:
        """:meth:`find_enrolment` on the caller's connection (the ingest pipeline
        holds one per association: no connection is opened per instance).

        A query may begin a transaction on ``conn`` (SQLAlchemy's autobegin);
        the caller ends it. The consent read here is a snapshot: whoever stores
        must check it again in the transaction that stores.
        """
        phash = patient_hash(self._secret, issuer, patient_id)
        cached = self._enrolments.get((centre_id, phash))
        if cached is not None:
            consent = _consent_of(conn, cached.id)
            if consent is None:
                self._enrolments.pop((centre_id, phash), None)
                return None
            return replace(cached, consent_care=bool(consent))
        row = conn.execute(select(*_ENROLMENT_INFO)
                           .where(Enrolment.centre_id == centre_id,
                                  Enrolment.patient_hash == phash)).first()
        if row is None:
            return None
        info = EnrolmentInfo(*row)
        if len(self._enrolments) >= _CACHE_LIMIT:
            self._enrolments.clear()
        self._enrolments[(centre_id, phash)] = info
        return info

    def get_enrolment(self, pseudonym: str) -> EnrolmentInfo:
        with self.db.session() as s:
            row = s.execute(select(*_ENROLMENT_INFO)
                            .where(Enrolment.pseudonym == pseudonym)).first()
        if row is None:
            raise NotFound("no such enrolment")
        return EnrolmentInfo(*row)

    def pseudonymiser(self, enrolment: EnrolmentInfo) -> Pseudonymiser:
        """The enrolment's keyed pseudonymiser (cached: its UID cache then serves
        every instance of a series)."""
        found = self._pseudonymisers.get(enrolment.id)
        if found is not None:
            return found
        key = enrolment_key(self._secret, enrolment.key_salt)
        made = Pseudonymiser(key=key, pseudonym=enrolment.pseudonym,
                             date_shift_days=derive_date_shift(key))
        if len(self._pseudonymisers) >= _CACHE_LIMIT:
            self._pseudonymisers.clear()
        self._pseudonymisers[enrolment.id] = made
        return made

    def withdraw_consent(self, pseudonym: str, *, actor: str,
                         form_version: str | None = None) -> int:
        """Withdraw consent for care: stop further use and erase the shared images.

        In one transaction with the audit event: the enrolment stops accepting
        instances; its access tokens are revoked; its open panels are closed
        with a note and stop sharing its studies (annotations on them go too);
        files go first, then rows; a :class:`ConsentRecord` is written. A crash
        in between leaves rows whose files are gone, which a re-run finishes.
        Returns the number of instances removed. The audit holds only counts.
        """
        validate_pseudonym(pseudonym)
        validate_form_version(form_version)
        with self.db.session() as s:
            enrolment = s.scalar(select(Enrolment).where(Enrolment.pseudonym == pseudonym))
            if enrolment is None:
                raise NotFound("no such enrolment")
            enrolment.consent_care = False
            enrolment.withdrawn_at = utcnow()
            s.flush()  # from here on, ingest refuses this enrolment
            tokens = s.execute(update(AccessToken)
                               .where(AccessToken.enrolment_id == enrolment.id,
                                      AccessToken.revoked_at.is_(None))
                               .values(revoked_at=utcnow())).rowcount  # type: ignore[attr-defined]
            panels = close_panels_of(s, enrolment.id, actor=actor)
            study_uids = list(s.scalars(select(Study.study_uid)
                                        .where(Study.enrolment_id == enrolment.id)))
            removed = s.scalar(select(func.count()).select_from(Instance)
                               .where(Instance.enrolment_id == enrolment.id)) or 0
            for study_uid in study_uids:
                self.store.delete_study(study_uid)
            s.execute(delete(PanelStudy).where(PanelStudy.study_uid.in_(study_uids)))
            s.execute(delete(Annotation).where(Annotation.study_uid.in_(study_uids)))
            s.execute(delete(Instance).where(Instance.enrolment_id == enrolment.id))
            s.execute(delete(Series).where(Series.study_uid.in_(study_uids)))
            s.execute(delete(Study).where(Study.enrolment_id == enrolment.id))
            s.add(ConsentRecord(enrolment_id=enrolment.id, kind="care", granted=False,
                                recorded_by=actor, form_version=form_version))
            audit.record(s, actor=actor, action="consent.withdraw", object_type="enrolment",
                         object_id=pseudonym,
                         detail=f"kind=care instances_removed={removed} "
                                f"tokens_revoked={tokens} panels_closed={panels}")
        log.info("consent withdrawn for an enrolment; %d instances removed", removed)
        return removed


def _consent_of(conn: Connection, enrolment_id: int) -> object:
    """The enrolment's consent for care (``None`` if it is gone)."""
    if conn.dialect.name != "sqlite":
        return conn.execute(_CONSENT_OF, {"b_id": enrolment_id}).scalar()
    with dbapi_cursor(conn) as cursor:
        cursor.execute(_SQLITE_CONSENT_OF.sql, _SQLITE_CONSENT_OF.args({"b_id": enrolment_id}))
        row = cursor.fetchone()
    return None if row is None else row[0]


def close_panels_of(s: Session, enrolment_id: int, *, actor: str) -> int:
    """Close every panel of the enrolment that is not closed or archived yet, with
    a note in place of a missing outcome; return how many were closed."""
    now = utcnow()
    count = 0
    for panel in s.scalars(select(Panel).where(Panel.enrolment_id == enrolment_id,
                                               Panel.state.not_in(("closed", "archived")))):
        previous = panel.state
        panel.state = "closed"
        panel.outcome = panel.outcome or WITHDRAWAL_NOTE
        panel.closed_at = panel.updated_at = now
        current = s.scalar(select(PanelRound).where(PanelRound.panel_id == panel.id,
                                                    PanelRound.number == panel.round))
        if current is not None:
            current.outcome = panel.outcome
            current.closed_at = now
        s.execute(delete(PanelStudy).where(PanelStudy.panel_id == panel.id))
        audit.record(s, actor=actor, action="panel.close", object_type="panel",
                     object_id=str(panel.id),
                     detail=f"from={previous} reason=consent-withdrawn")
        count += 1
    return count
