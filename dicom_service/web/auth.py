"""Sessions and personal tokens: who a request comes from.

Placeholder until accounts land: knows no session and no personal token.
"""

from __future__ import annotations

from fastapi import Request

from dicom_service.app import Services
from dicom_service.web.principal import Principal


def principal_from_request(request: Request, services: Services) -> Principal | None:
    """The person behind a session cookie or a personal token, else ``None``."""
    del request, services
    return None
