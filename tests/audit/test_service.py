"""The chain of a real ``serve`` (with its DICOM listener processes) receiving
from parallel senders while the command line writes too."""

from __future__ import annotations

from pathlib import Path

from tests.audit.conftest import ISSUER, PATIENT, write_series
from tests.conftest import CENTRE, PEER
from tests.support.peers import spawn_storescu
from tests.support.service import ServiceProcess

SENDERS = 4
PER_SENDER = 10


def test_a_serving_node_keeps_the_chain_intact(service: ServiceProcess, tmp_path: Path) -> None:
    service.enrol(CENTRE, PATIENT, ISSUER)
    folders = [tmp_path / f"series{n}" for n in range(SENDERS)]
    for n, folder in enumerate(folders):
        write_series(folder, PER_SENDER, seed=40 + n)
    with service:
        senders = [spawn_storescu(folder, "127.0.0.1", service.dicom_port, service.ae_title,
                                  PEER) for folder in folders]
        for n in range(3):  # the command line writes meanwhile
            service.cli("centres", "add", f"Meanwhile {n}")
        for sender in senders:
            _, err = sender.communicate(timeout=300)
            assert sender.returncode == 0, err[-2000:]
    verified = service.cli("audit", "verify", check=False)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith("audit chain intact: ")
    stored = service.query("SELECT count(*) FROM audit_events WHERE action = 'instance.store'")
    assert stored == [(SENDERS * PER_SENDER,)]
    ids = [r[0] for r in service.query("SELECT id FROM audit_events ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1))
