"""The public base URL of DICOMweb resources (RetrieveURL, BulkDataURI, STOW answers)."""

from __future__ import annotations

from fastapi import Request

_DEFAULT_PORTS = {"http": 80, "https": 443}


def dicomweb_base(request: Request) -> str:
    """``scheme://host[:port]/dicom-web/`` as the caller reached us.

    Some clients (dicomweb-client) send a Host header without the port; then
    the port the server listens on is added when it is not the scheme's
    default. A configured public URL for deployments behind a proxy replaces
    this in one place.
    """
    url = request.base_url
    host = request.headers.get("host", "")
    server = request.scope.get("server")
    port = url.port
    if ":" not in host.rpartition("]")[2] and server and server[1] != _DEFAULT_PORTS.get(
            url.scheme):
        port = server[1]
    netloc = url.hostname or "localhost"
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port and port != _DEFAULT_PORTS.get(url.scheme):
        netloc = f"{netloc}:{port}"
    return f"{url.scheme}://{netloc}{url.path.rstrip('/')}/dicom-web/"
