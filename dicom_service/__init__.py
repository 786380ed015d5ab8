"""dicom_service: the imaging side of rare-disease expert panels.

A DICOM node that hospital PACS send studies to; every instance is
de-identified on arrival by a versioned profile and stored under the
pseudonym of an enrolment, gated by the patient's consent.
"""

__version__ = "0.1.0"
