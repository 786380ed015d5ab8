"""Dependencies every route declares: the services and who is calling."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from dicom_service.app import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def is_admin_token(request: Request, services: Services) -> bool:
    """Does the request carry the administrator token from configuration?

    The token bootstraps a fresh installation and serves scripts; people who
    administer the platform log in as platform administrators
    (:data:`dicom_service.web.policy.AdminDep` accepts both).
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    expected = services.settings.admin_token or ""
    return scheme.lower() == "bearer" and bool(token) and bool(expected) and \
        hmac.compare_digest(token.encode(), expected.encode())
