"""A running service loaded with the sample set through C-STORE, and tokens.

Built once per session (the machine is small): the read-only DICOMweb tests
share it. Tests that store go through :func:`loaded` too but only add
instances they can name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dicomweb_client import DICOMwebClient

from dicom_service.app import build_services
from dicom_service.config import Settings
from sample_data.generate import FileEntry, Manifest
from tests.conftest import CENTRE, PEER
from tests.support.peers import storescu
from tests.support.service import ServiceProcess

# Every transfer syntax of the sample set (checked against the manifest)
TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "implicit-le",
    "1.2.840.10008.1.2.1": "explicit-le",
    "1.2.840.10008.1.2.1.99": "deflated",
    "1.2.840.10008.1.2.4.50": "jpeg-baseline",
    "1.2.840.10008.1.2.4.80": "jpeg-ls",
    "1.2.840.10008.1.2.4.90": "jpeg-2000",
    "1.2.840.10008.1.2.5": "rle",
}


@dataclass
class Loaded:
    service: ServiceProcess
    directory: Path
    manifest: Manifest
    pseudonyms: dict[tuple[str, str | None], str]
    tokens: dict[str, str]  # pseudonym -> token
    clients: dict[str, DICOMwebClient] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"

    def client(self, pseudonym: str) -> DICOMwebClient:
        """One client per enrolment, closed with the service (no socket left behind)."""
        if pseudonym not in self.clients:
            self.clients[pseudonym] = DICOMwebClient(
                url=f"{self.url}/dicom-web",
                headers={"Authorization": f"Bearer {self.tokens[pseudonym]}"})
        return self.clients[pseudonym]

    def close(self) -> None:
        for client in self.clients.values():
            client._session.close()

    def pseudonym_of(self, f: FileEntry) -> str:
        return self.pseudonyms[(f["patient_id"], f.get("issuer"))]

    def stored_uids(self, f: FileEntry) -> tuple[str, str, str]:
        """The pseudonymous (study, series, SOP instance) UIDs of a sample file."""
        rows = self.service.query(
            "SELECT study_uid, series_uid, sop_uid FROM instances WHERE sop_uid = ?",
            self._uid(f, f["sop_uid"]))
        assert len(rows) == 1
        return rows[0]

    def stored_ts(self, f: FileEntry) -> str:
        """The transfer syntax the file was stored in (pixel cleaning may re-encode)."""
        sop = self.stored_uids(f)[2]
        return str(self.service.query(
            "SELECT transfer_syntax_uid FROM instances WHERE sop_uid = ?", sop)[0][0])

    def _uid(self, f: FileEntry, original: str) -> str:
        services = build_services(Settings(data_dir=self.service.data_dir))
        try:
            care = services.care
            return care.pseudonymiser(care.get_enrolment(self.pseudonym_of(f))).uid(original)
        finally:
            services.close()

    def labelled(self, label: str) -> FileEntry:
        return next(f for f in self.manifest.files if f["label"] == label)

    def file(self, transfer_syntax: str) -> FileEntry:
        """The sample file with the most frames in ``transfer_syntax``."""
        files = [f for f in self.manifest.files if f["transfer_syntax_uid"] == transfer_syntax
                 and f["number_of_frames"]]
        return max(files, key=lambda f: f["number_of_frames"])


@pytest.fixture(scope="session")
def loaded(tmp_path_factory: pytest.TempPathFactory,
           sample_set: tuple[Path, Manifest]) -> Iterator[Loaded]:
    directory, manifest = sample_set
    svc = ServiceProcess(tmp_path_factory.mktemp("dicomweb") / "data")
    svc.setup_peer(CENTRE, PEER)
    pseudonyms = {(p["patient_id"], p.get("issuer")):
                  svc.enrol(CENTRE, p["patient_id"], p.get("issuer"))
                  for p in manifest.patients}
    tokens = {p: svc.cli("tokens", "issue", "--enrolment", p).stdout.strip()
              for p in pseudonyms.values()}
    with svc:
        result = storescu([directory / f["path"] for f in manifest.files], "127.0.0.1",
                          svc.dicom_port, svc.ae_title, PEER)
        assert result.returncode == 0, result.stderr[-2000:]
        state = Loaded(svc, directory, manifest, pseudonyms, tokens)
        try:
            yield state
        finally:
            state.close()
