"""Index tables. Nothing identifying is stored here: patients are known only by
a keyed hash of issuer + patient ID, studies only by pseudonymous UIDs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Centre(Base):
    __tablename__ = "centres"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Peer(Base):
    """A DICOM peer (a hospital PACS or modality) allowed to send, bound to one centre."""

    __tablename__ = "peers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    centre_id: Mapped[int] = mapped_column(ForeignKey("centres.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Enrolment(Base):
    """One patient enrolled by one centre, known by a random pseudonym."""

    __tablename__ = "enrolments"
    __table_args__ = (UniqueConstraint("centre_id", "patient_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(32), unique=True)
    centre_id: Mapped[int] = mapped_column(ForeignKey("centres.id"))
    # HMAC-SHA256(server secret, issuer + NUL + patient ID), hex
    patient_hash: Mapped[str] = mapped_column(String(64))
    # random salt; the enrolment key is HMAC(server secret, salt): the index
    # alone cannot re-derive pseudonymous UIDs
    key_salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    consent_care: Mapped[bool] = mapped_column(Boolean, default=True)
    consent_registries: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_research: Mapped[bool] = mapped_column(Boolean, default=False)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # touched by every stored instance: the row lock that orders ingest and withdrawal
    last_instance_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                              nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Study(Base):
    __tablename__ = "studies"
    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"), index=True)
    study_date: Mapped[str | None] = mapped_column(String(8), nullable=True)
    study_time: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # study-level attributes of the de-identified data (first instance wins),
    # for QIDO-RS (PS3.18 Table 10.6.3-3); migration 0003
    patient_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    patient_birth_date: Mapped[str | None] = mapped_column(String(8), nullable=True)
    patient_sex: Mapped[str | None] = mapped_column(String(16), nullable=True)
    accession_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    study_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    study_description: Mapped[str | None] = mapped_column(String(64), nullable=True)
    referring_physician_name: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Series(Base):
    __tablename__ = "series"
    series_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.study_uid"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16), nullable=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # series-level attributes for QIDO-RS (PS3.18 Table 10.6.3-4); migration 0003
    series_description: Mapped[str | None] = mapped_column(String(64), nullable=True)
    series_date: Mapped[str | None] = mapped_column(String(8), nullable=True)
    series_time: Mapped[str | None] = mapped_column(String(16), nullable=True)
    pps_start_date: Mapped[str | None] = mapped_column(String(8), nullable=True)
    pps_start_time: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Instance(Base):
    __tablename__ = "instances"
    sop_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    series_uid: Mapped[str] = mapped_column(ForeignKey("series.series_uid"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    path: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    profile_name: Mapped[str] = mapped_column(String(64))
    profile_version: Mapped[str] = mapped_column(String(32))
    profile_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # DICOM JSON model of the de-identified instance (PS3.18 F.2), bulk data
    # replaced by BulkDataURI placeholders; filled at ingest so metadata needs
    # no file read
    metadata_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    number_of_frames: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # where the Pixel Data value starts in the stored file and its length
    # (native pixel data only), so frames are served by a ranged read
    pixel_data_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pixel_data_length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ProfileActivation(Base):
    """Which de-identification profile version is active: the newest row wins."""

    __tablename__ = "profile_activations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_name: Mapped[str] = mapped_column(String(64))
    profile_version: Mapped[str] = mapped_column(String(32))
    profile_sha256: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    activated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AccessToken(Base):
    """A bearer token for DICOMweb, bound to one enrolment (until panels and
    personal tokens replace the binding). Only a SHA-256 of the token is kept."""

    __tablename__ = "access_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"), index=True)
    scope: Mapped[str] = mapped_column(String(64), default="dicomweb")
    label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEvent(Base):
    """What happened, by whom, to which object; never identifying values."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_object", "object_type", "object_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
