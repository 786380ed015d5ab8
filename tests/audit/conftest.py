"""Services on a fresh data directory, and helpers that write audit rows the
way the product does (service calls, ingest, reads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dicom_service.app import Services, build_services
from dicom_service.care import audit
from dicom_service.config import Settings
from dicom_service.ingest.pipeline import Sender
from sample_data.generate import write_ct_series

CENTRE = "Audit Centre"
PATIENT = "AUDIT-0001"
ISSUER = "HOSP-AUD"


def open_services(data_dir: Path) -> Services:
    return build_services(Settings(data_dir=data_dir))


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = open_services(tmp_path / "data")
    try:
        yield svc
    finally:
        svc.close()


def write_series(directory: Path, n: int, seed: int = 1) -> list[Path]:
    """``n`` tiny CT instances of PATIENT (16x16, one series per seed)."""
    return write_ct_series(directory, n=n, size=16, seed=seed, patient_id=PATIENT,
                           issuer=ISSUER)


def ingest(services: Services, files: list[Path], actor: str = "peer:AUDIT_TEST") -> None:
    sender = Sender(services.care.centre_id(CENTRE), actor)
    for path in files:
        ds = pydicom.dcmread(path)
        services.pipeline.ingest(ds, str(ds.file_meta.TransferSyntaxUID), sender)


def verify(services: Services) -> audit.Verification:
    with services.db.engine.connect() as conn:
        return audit.verify(conn, audit.chain_for(services.db))


def rows(services: Services) -> list[dict[str, object]]:
    with services.db.engine.connect() as conn:
        return list(audit.export(conn))
