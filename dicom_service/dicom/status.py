"""Named DIMSE status codes used by this service (PS3.4 Annex B, PS3.7 Annex C).

Every status the service answers has a name here; handlers never return a bare
number.
"""

from __future__ import annotations

from enum import IntEnum


class StoreStatus(IntEnum):
    """C-STORE response statuses (PS3.4 Table B.2-1 and PS3.7 C.4)."""

    SUCCESS = 0x0000
    # PS3.7 C.5.3: refused, out of resources (0xA7xx range for Storage)
    OUT_OF_RESOURCES = 0xA700
    # PS3.4 B.2.3: data set does not match SOP class (0xA9xx)
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    # PS3.4 B.2.3: cannot understand (0xCxxx); the low bits name our reason
    CANNOT_UNDERSTAND = 0xC000
    UNPARSABLE_DATASET = 0xC001
    MISSING_REQUIRED_UIDS = 0xC002
    INVALID_UID = 0xC003
    PATIENT_NOT_ENROLLED = 0xC010
    NO_CONSENT_FOR_CARE = 0xC011
    PEER_NOT_AUTHORISED = 0xC012
    DEIDENTIFICATION_FAILED = 0xC020
    # PS3.7 C.4.2: processing failure
    PROCESSING_FAILURE = 0x0110


STATUS_COMMENTS: dict[StoreStatus, str] = {
    StoreStatus.SUCCESS: "Stored",
    StoreStatus.OUT_OF_RESOURCES: "Refused: out of resources",
    StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS: "Data set does not match SOP class",
    StoreStatus.CANNOT_UNDERSTAND: "Cannot understand",
    StoreStatus.UNPARSABLE_DATASET: "Cannot understand: data set could not be parsed",
    StoreStatus.MISSING_REQUIRED_UIDS: "Cannot understand: required UIDs missing",
    StoreStatus.INVALID_UID: "Cannot understand: a UID is malformed",
    StoreStatus.PATIENT_NOT_ENROLLED: "Refused: patient not enrolled at this centre",
    StoreStatus.NO_CONSENT_FOR_CARE: "Refused: no active consent for care",
    StoreStatus.PEER_NOT_AUTHORISED: "Refused: calling peer is not registered",
    StoreStatus.DEIDENTIFICATION_FAILED: "Refused: instance could not be de-identified",
    StoreStatus.PROCESSING_FAILURE: "Processing failure",
}
