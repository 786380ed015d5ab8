"""The loopback peer helpers in tests/support/peers.py work against real DCMTK and Orthanc.

Run inside a private network namespace (Orthanc and storescp bind every interface):

    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/test_peers.py'
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.uid import RLELossless

from sample_data.generate import write_ct_series
from tests.support.peers import (
    LOOPBACK,
    Orthanc,
    PeerError,
    StoreSCP,
    echoscu,
    free_port,
    running_in_private_netns,
    stored_contexts,
    storescu,
    write_as_stored_profile,
)

pytestmark = pytest.mark.skipif(
    not running_in_private_netns(),
    reason="needs a private network namespace: "
    "unshare -n sh -c 'ip link set lo up && .venv/bin/pytest ...'",
)

needs_dcmtk = pytest.mark.skipif(shutil.which("dcmdump") is None, reason="DCMTK not installed")
needs_orthanc = pytest.mark.skipif(
    not Path("/usr/sbin/Orthanc").exists(), reason="Orthanc not installed"
)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("series")
    return write_ct_series(out, n=5, size=64, seed=7, patient_id="PEERS-TEST")


@pytest.fixture(scope="module")
def rle_series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("rle")
    return write_ct_series(
        out, n=3, size=64, seed=8, patient_id="PEERS-RLE", transfer_syntax=RLELossless
    )


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))


def test_clients_refuse_non_loopback_hosts(series: list[Path]) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        storescu(series, "192.0.2.1", 104, "ANY", "ME")
    with pytest.raises(ValueError, match="non-loopback"):
        echoscu("192.0.2.1", 104, "ANY")


def test_as_stored_profile_proposes_stored_syntaxes(
    rle_series: list[Path], series: list[Path], tmp_path: Path
) -> None:
    pairs = stored_contexts([*rle_series, *series])
    assert {ts for _, ts in pairs} == {RLELossless, "1.2.840.10008.1.2.1"}
    cfg, profile = write_as_stored_profile(rle_series, tmp_path / "x.cfg")
    text = cfg.read_text()
    assert f"TransferSyntax1 = {RLELossless}" in text
    assert f"[{profile}]" in text


@needs_dcmtk
def test_storescp_receives_files_as_stored(series: list[Path], rle_series: list[Path]) -> None:
    with StoreSCP(aet="TESTSCP") as scp:
        assert echoscu(LOOPBACK, scp.port, scp.aet).returncode == 0
        result = storescu(series, LOOPBACK, scp.port, scp.aet, "TESTSCU")
        assert result.returncode == 0, result.stderr
        # a directory, scanned recursively, compressed files sent without conversion
        result = storescu(rle_series[0].parent, LOOPBACK, scp.port, scp.aet, "TESTSCU")
        assert result.returncode == 0, result.stderr
        assert scp.count_files() == len(series) + len(rle_series)
        received = stored_contexts(scp.received_files())
        assert {ts for _, ts in received} == {RLELossless, "1.2.840.10008.1.2.1"}
        pid = scp.pid
    assert pid is not None and scp.proc is not None and scp.proc.poll() is not None


@needs_dcmtk
def test_storescp_fork_accepts_parallel_associations(series: list[Path]) -> None:
    from tests.support.peers import spawn_storescu

    with StoreSCP(fork=True) as scp:
        procs = [
            spawn_storescu(series[i::2], LOOPBACK, scp.port, scp.aet, f"SCU{i}") for i in range(2)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        assert scp.count_files() == len(series)


@needs_dcmtk
@needs_orthanc
def test_orthanc_receives_instances(series: list[Path], rle_series: list[Path]) -> None:
    with Orthanc(aet="TESTORTHANC") as server:
        assert server.count_instances() == 0
        assert server.get_json("/system")["DicomAet"] == "TESTORTHANC"
        assert echoscu(LOOPBACK, server.dicom_port, server.aet).returncode == 0
        result = storescu([*series, *rle_series], LOOPBACK, server.dicom_port, server.aet, "ANYAE")
        assert result.returncode == 0, result.stderr
        assert server.count_instances() == len(series) + len(rle_series)
        # Orthanc keeps compressed instances as received
        syntaxes = {
            server.get(f"/instances/{inst}/metadata/TransferSyntax").decode()
            for inst in server.get_json("/instances")
        }
        assert syntaxes == {RLELossless, "1.2.840.10008.1.2.1"}
        workdir = server.workdir
    assert not workdir.exists()


@needs_orthanc
def test_orthanc_with_dicomweb_plugin() -> None:
    with Orthanc(dicomweb=True) as server:
        plugins = server.get_json("/plugins")
        assert "dicom-web" in plugins
        assert server.get_json("/dicom-web/studies") == []


def test_private_netns_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import peers

    monkeypatch.setattr(peers, "running_in_private_netns", lambda: False)
    with pytest.raises(PeerError):
        peers.require_private_netns()
    monkeypatch.setenv(peers.NETNS_ENV, "1")
    with pytest.raises(PeerError, match="refusing"):
        peers.ensure_private_netns()
