"""Domain errors. The domain raises these; one boundary maps them to DIMSE
statuses (``ingest/scp.py``), another to HTTP problem responses (``web``).

Messages never carry identifying values: they name the rule, not the data.
"""

from __future__ import annotations

from enum import Enum


class Refusal(Enum):
    """Why an instance was refused. Each reason has one DIMSE and one HTTP mapping."""

    UNPARSABLE_DATASET = "unparsable-dataset"
    MISSING_REQUIRED_UIDS = "missing-required-uids"
    INVALID_UID = "invalid-uid"
    PATIENT_NOT_ENROLLED = "patient-not-enrolled"
    NO_CONSENT_FOR_CARE = "no-consent-for-care"
    PEER_NOT_AUTHORISED = "peer-not-authorised"
    DEIDENTIFICATION_FAILED = "deidentification-failed"
    OUT_OF_RESOURCES = "out-of-resources"


class IngestRefused(Exception):
    """An instance was refused; nothing of it was kept."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class NotFound(LookupError):
    """A named object (centre, peer, enrolment) does not exist."""


class Forbidden(PermissionError):
    """The caller may see the object but not do this to it (HTTP 403).

    Used only where the object is already visible to the caller; an object the
    caller may not see raises :class:`NotFound` instead (no existence leak).
    """


class Conflict(ValueError):
    """The object exists already or the change contradicts the current state."""


class ConfigError(ValueError):
    """The configuration is invalid; the service refuses to start."""
