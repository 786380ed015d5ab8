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
    # of an image: the attributes of metadata_json that rendering reads
    # (dicom.image_tags), so that a frame needs no parse of the whole header
    image_json: Mapped[str | None] = mapped_column(Text, nullable=True)


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
    # hash chain (migration 0004): SHA-256 over the previous row's hash and this
    # row's fields; see care/audit.py. NULL only on rows written before 0004.
    row_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


# --- Organisation, people, panels (migration 0004) -------------------------

class Network(Base):
    """A European Reference Network (or any network of centres)."""

    __tablename__ = "networks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ThematicArea(Base):
    """A network's sub-group (e.g. "VASCA-WG"): what people choose in preferences."""

    __tablename__ = "thematic_areas"
    __table_args__ = (UniqueConstraint("network_id", "code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))


class CentreNetwork(Base):
    """A centre (hospital) is a member of a network."""

    __tablename__ = "centre_networks"
    centre_id: Mapped[int] = mapped_column(ForeignKey("centres.id"), primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), primary_key=True)


class User(Base):
    """A person who logs in. Password: Argon2id hash; second factor: TOTP."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    # the person's own hospital; None for platform administrators without one
    centre_id: Mapped[int | None] = mapped_column(ForeignKey("centres.id"), nullable=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # base32 TOTP secret; None until the second factor is enrolled
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    # the last TOTP time step accepted: a code of that step or earlier is a replay
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    is_platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserRole(Base):
    """A role of a person in a network: health_professional, coordinator,
    dispatcher, researcher or guest. A guest's role expires (90 days unless
    extended)."""

    __tablename__ = "user_roles"
    __table_args__ = (UniqueConstraint("user_id", "network_id", "role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserThematicArea(Base):
    """A person's preferences: the thematic areas they can be invited for."""

    __tablename__ = "user_thematic_areas"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("thematic_areas.id"), primary_key=True)


class RecoveryCode(Base):
    """One-time recovery codes for the second factor (only a hash is kept)."""

    __tablename__ = "recovery_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_sha256: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebSession(Base):
    """A browser session. The cookie holds a random token; only its SHA-256 is kept."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # password checked, second factor pending (True once both are done)
    second_factor_done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PersonalToken(Base):
    """A person's access token for DICOMweb or API clients, with scopes
    (space-separated: ``dicomweb``, ``api``). Only a SHA-256 is kept."""

    __tablename__ = "personal_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    scopes: Mapped[str] = mapped_column(String(128))
    label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ExpertGroup(Base):
    """A named group of experts of a network, invited to a panel as a whole."""

    __tablename__ = "expert_groups"
    __table_args__ = (UniqueConstraint("network_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("thematic_areas.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(64))


class ExpertGroupMember(Base):
    __tablename__ = "expert_group_members"
    group_id: Mapped[int] = mapped_column(ForeignKey("expert_groups.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)


class Panel(Base):
    """A virtual expert panel about one enrolled patient.

    ``state``: draft, inviting, review, meeting, outcome, closed, archived.
    ``round`` counts restarts; the history of earlier rounds stays.
    """

    __tablename__ = "panels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"), index=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("thematic_areas.id"))
    lead_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # a short clinical question, written by the lead; never the patient's name
    title: Mapped[str] = mapped_column(String(200))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="draft")
    round: Mapped[int] = mapped_column(Integer, default=1)
    min_contributions: Mapped[int] = mapped_column(Integer, default=2)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PanelRound(Base):
    """One round of a panel: what it concluded. A restart opens a new round."""

    __tablename__ = "panel_rounds"
    __table_args__ = (UniqueConstraint("panel_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    panel_id: Mapped[int] = mapped_column(ForeignKey("panels.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    restart_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class PanelMember(Base):
    """An invitation and, once accepted, a membership.

    ``status``: invited, accepted, declined, removed.
    """

    __tablename__ = "panel_members"
    __table_args__ = (UniqueConstraint("panel_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    panel_id: Mapped[int] = mapped_column(ForeignKey("panels.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="invited")
    invited_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    invited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PanelStudy(Base):
    """A study of the panel's enrolment that the lead chose to share."""

    __tablename__ = "panel_studies"
    panel_id: Mapped[int] = mapped_column(ForeignKey("panels.id"), primary_key=True)
    study_uid: Mapped[str] = mapped_column(ForeignKey("studies.study_uid"), primary_key=True,
                                           index=True)


class Contribution(Base):
    """A member's written contribution (``kind`` contribution) or request for
    more information (``kind`` info_request). Editable until the outcome."""

    __tablename__ = "contributions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    panel_id: Mapped[int] = mapped_column(ForeignKey("panels.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16), default="contribution")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Annotation(Base):
    """A viewer annotation (length, angle, arrow, text) shared by a panel's
    members. ``data`` is JSON in image coordinates."""

    __tablename__ = "annotations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    panel_id: Mapped[int] = mapped_column(ForeignKey("panels.id"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64))
    sop_uid: Mapped[str] = mapped_column(String(64))
    frame: Mapped[int] = mapped_column(Integer, default=1)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ConsentRecord(Base):
    """A consent given or withdrawn: which (care, registries, research), by whom
    (the recording clinician), when, on which form version. The signed form
    stays at the hospital."""

    __tablename__ = "consent_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool] = mapped_column(Boolean)
    recorded_by: Mapped[str] = mapped_column(String(64))
    form_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
