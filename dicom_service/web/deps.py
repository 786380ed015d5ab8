"""Dependencies every route declares: the services and who is calling."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from dicom_service.app import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_admin(request: Request, services: ServicesDep) -> str:
    """The administrator token from configuration, as a bearer token.

    Replaced by people and roles later; until then it guards the admin API.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    expected = services.settings.admin_token or ""
    if scheme.lower() != "bearer" or not token or not expected or not hmac.compare_digest(
            token.encode(), expected.encode()):
        raise HTTPException(401, "Unauthorized", headers={"WWW-Authenticate": "Bearer"})
    return "admin"


AdminDep = Annotated[str, Depends(require_admin)]
