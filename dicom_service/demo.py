"""``serve --demo``: a demo centre, peer and enrolments, and the sample set
loaded through the real C-STORE path (the same one a hospital PACS uses).
"""

from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE

from dicom_service.app import Services
from dicom_service.errors import Conflict

log = logging.getLogger(__name__)

DEMO_CENTRE = "Demo University Hospital"
DEMO_PEER = "DEMO_PACS"


def seed(services: Services, patients: list[tuple[str, str | None]]) -> list[str]:
    """Create the demo centre, peer and enrolments (idempotent); return the pseudonyms."""
    care = services.care
    if DEMO_CENTRE not in care.list_centres():
        care.add_centre(DEMO_CENTRE, actor="demo")
    if DEMO_PEER not in {p.ae_title for p in care.list_peers()}:
        care.add_peer(DEMO_PEER, DEMO_CENTRE, "127.0.0.1", actor="demo")
    pseudonyms = []
    centre_id = care.centre_id(DEMO_CENTRE)
    for patient_id, issuer in patients:
        try:
            pseudonyms.append(care.enrol(DEMO_CENTRE, patient_id, issuer, actor="demo"))
        except Conflict:
            found = care.find_enrolment(centre_id, issuer, patient_id)
            if found is not None:
                pseudonyms.append(found.pseudonym)
    return pseudonyms


def send_files(files: list[Path], port: int, called_aet: str, calling_aet: str = DEMO_PEER,
               host: str = "127.0.0.1") -> tuple[int, int]:
    """C-STORE ``files`` as stored; return (succeeded, failed)."""
    contexts: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for f in files:
        meta = dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta
        contexts[(str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))].append(f)
    ok = failed = 0
    pairs = list(contexts)
    for start in range(0, len(pairs), 100):  # at most 128 contexts per association
        ae = AE(ae_title=calling_aet)
        for sop_class, ts in pairs[start:start + 100]:
            ae.add_requested_context(sop_class, ts)
        assoc = ae.associate(host, port, ae_title=called_aet)
        if not assoc.is_established:
            raise ConnectionError("the demo association was not accepted")
        try:
            for pair in pairs[start:start + 100]:
                for f in contexts[pair]:
                    status = assoc.send_c_store(f)
                    if status and int(status.Status) == 0:
                        ok += 1
                    else:
                        failed += 1
        finally:
            assoc.release()
    return ok, failed


def load_demo(services: Services, port: int) -> str:
    """Seed, generate the sample set, send it through C-STORE; return a summary.

    The sample set (synthetic, with planted fake identifiers) is generated into
    a temporary directory that is removed afterwards: the data directory only
    ever holds what the service itself de-identified.
    """
    from sample_data.generate import generate

    with tempfile.TemporaryDirectory(prefix="dicom-service-demo-") as tmp:
        sample_dir = Path(tmp)
        manifest = generate(sample_dir)
        patients = list(dict.fromkeys((p["patient_id"], p.get("issuer"))
                                      for p in manifest.patients))
        pseudonyms = seed(services, patients)
        files = [sample_dir / f["path"] for f in manifest.files]
        ok, failed = send_files(files, port, services.settings.ae_title)
    s = services.settings
    return (f"demo loaded: {ok} instances stored, {failed} refused, enrolments "
            f"{', '.join(pseudonyms)}\n"
            f"  DICOM: {s.ae_title} at {s.dicom_host}:{port} (registered peer {DEMO_PEER} "
            f"from 127.0.0.1)\n"
            f"  HTTP:  http://{s.http_host}:{s.http_port}/health\n"
            f"  admin token: {s.data_dir / 'admin.token'}")
