"""``serve --demo``: a demo network with centres, people of every role and two
panels, and the sample set loaded through the real C-STORE path (the same one
a hospital PACS uses).

Everything here is fictitious. Every step is idempotent: a second start on the
same data directory finds what the first one made (by name, username or
panel title) and creates only what does not exist yet. The demo accounts'
passwords and TOTP secrets exist only in ``DATA_DIR/demo-credentials.txt``
(mode 0600); they are never logged.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyotp
from pydicom import dcmread
from pynetdicom import AE
from sqlalchemy import select

from dicom_service.app import Services
from dicom_service.care.access import Person, load_person
from dicom_service.care.accounts import AccountService
from dicom_service.care.organisation import OrganisationService
from dicom_service.care.panels import PanelService
from dicom_service.db.models import Enrolment, Panel, Series, Study
from dicom_service.errors import ConfigError, Conflict, NotFound

log = logging.getLogger(__name__)

DEMO_CENTRE = "Demo University Hospital"
DEMO_PEER = "DEMO_PACS"
# the viewer benchmark opens a 300-slice 512x512 CT of the demo
DEMO_CT_SLICES = 300
DEMO_NETWORK = "ERN-DEMO Vascular Diseases"
# (code, name) of the network's thematic areas
DEMO_AREAS = (("VASCA", "Vascular Anomalies"),
              ("HHT", "Hereditary Haemorrhagic Telangiectasia"),
              ("PAD", "Paediatric and Rare Arterial Diseases"))
NORDHAVN = "Nordhavn Rigshospital"
SAN_FERRAN = "Hospital Clinico San Ferran"
# a guest's hospital is outside the network
OUTSIDE = "Valmont Private Clinic"
CREDENTIALS_FILE = "demo-credentials.txt"
ACTOR = "demo"


@dataclass(frozen=True)
class DemoPerson:
    username: str
    display_name: str
    centre: str | None
    role: str | None  # in DEMO_NETWORK; None for the platform administrator
    areas: tuple[str, ...]
    admin: bool = False


DEMO_PEOPLE = (
    DemoPerson("lead", "Dr Ilse Brandt", DEMO_CENTRE, "health_professional", ("VASCA", "HHT")),
    DemoPerson("lindqvist", "Dr Jonas Lindqvist", NORDHAVN, "health_professional", ("VASCA",)),
    DemoPerson("ferrer", "Dr Marta Ferrer", SAN_FERRAN, "health_professional",
               ("VASCA", "PAD")),
    DemoPerson("coordinator", "Dr Pieter de Vries", NORDHAVN, "coordinator", ("VASCA", "HHT")),
    DemoPerson("dispatcher", "Nora Quint", SAN_FERRAN, "dispatcher", ("HHT",)),
    DemoPerson("researcher", "Dr Tomasz Wilk", None, "researcher", ()),
    DemoPerson("guest", "Dr Ana Sousa", OUTSIDE, "guest", ("VASCA",)),
    DemoPerson("admin", "Platform Administrator", None, None, (), admin=True),
)
# an expert group of the network: (name, area, members)
DEMO_GROUP = ("Pulmonary AVM experts", "VASCA", ("lindqvist", "ferrer", "coordinator"))
# the panels: (title, patient ID of the sample set, area, urgent)
REVIEW_PANEL = ("Multiple pulmonary nodules on chest CT: arteriovenous malformations?",
                "Q-4471-ZQF", "VASCA", False)
DRAFT_PANEL = ("Hepatic vascular lesion on ultrasound: HHT work-up", "NO-ODG-5581", "HHT",
               True)
CONTRIBUTIONS = (
    ("lindqvist", "contribution",
     "At least three feeding arteries of 3 mm or more in the right lower lobe, best seen on "
     "the lung window. Typical of pulmonary AVMs; I would embolise the largest first."),
    ("ferrer", "contribution",
     "Agree with AVMs. Given the size of the feeders, embolisation is indicated; screen the "
     "family for HHT and repeat the CT six months after treatment."),
    ("ferrer", "info_request",
     "Is there a contrast echocardiogram (bubble study) and the oxygen saturation at rest?"),
)


@dataclass(frozen=True)
class DemoAccount:
    """One line of the credentials file."""

    username: str
    password: str
    otpauth_uri: str

    def totp(self) -> pyotp.TOTP:
        return pyotp.TOTP(pyotp.parse_uri(self.otpauth_uri).secret)


def seed(services: Services, patients: list[tuple[str, str | None]]) -> list[str]:
    """Create the demo centre, peer and enrolments (idempotent); return the pseudonyms."""
    care = services.care
    if DEMO_CENTRE not in care.list_centres():
        care.add_centre(DEMO_CENTRE, actor=ACTOR)
    if DEMO_PEER not in {p.ae_title for p in care.list_peers()}:
        care.add_peer(DEMO_PEER, DEMO_CENTRE, "127.0.0.1", actor=ACTOR)
    pseudonyms = []
    centre_id = care.centre_id(DEMO_CENTRE)
    for patient_id, issuer in patients:
        try:
            pseudonyms.append(care.enrol(DEMO_CENTRE, patient_id, issuer, actor=ACTOR))
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


# -- the network and its people ---------------------------------------------------------
def _network(services: Services) -> tuple[int, dict[str, int]]:
    """The demo network, its areas and member centres; return (network ID, area IDs by code)."""
    org = OrganisationService(services.db)
    care = services.care
    try:
        network_id = org.network_id(DEMO_NETWORK)
    except NotFound:
        network_id = org.add_network(DEMO_NETWORK, by=None)
    known = {a.code: a.id for a in org.list_areas(network_id)}
    for code, name in DEMO_AREAS:
        if code not in known:
            known[code] = org.add_area(network_id, code, name, by=None)
    centres = care.list_centres()
    members = {name for _, name in org.network_centres(network_id)}
    for centre in (DEMO_CENTRE, NORDHAVN, SAN_FERRAN, OUTSIDE):
        if centre not in centres:
            care.add_centre(centre, actor=ACTOR)
        if centre != OUTSIDE and centre not in members:
            org.join_network(care.centre_id(centre), network_id, by=None)
    return network_id, known


def _append_credentials(path: Path, accounts: list[DemoAccount], base_url: str) -> None:
    """Add ``accounts`` to the credentials file (created with mode 0600)."""
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        if new:
            out.write("# dicom_service demo accounts (fictitious people). Log in at "
                      f"{base_url}\n# with the password and a code of the authenticator app "
                      "that reads the otpauth URI.\n# username password otpauth-uri\n")
        for a in accounts:
            out.write(f"{a.username} {a.password} {a.otpauth_uri}\n")


def read_credentials(path: Path) -> dict[str, DemoAccount]:
    """The accounts of a credentials file written by :func:`load_demo`, by username."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            username, password, uri = line.split(" ")
            out[username] = DemoAccount(username, password, uri)
    return out


def _people(services: Services, network_id: int, areas: dict[str, int],
            credentials: Path, base_url: str) -> dict[str, int]:
    """Create the demo people who do not exist yet, each with a role, thematic
    areas and an enrolled second factor, and the expert group; return user IDs
    by username."""
    secret = services.settings.server_secret
    if secret is None:  # pragma: no cover - build_services fills it in
        raise ConfigError("no server secret")
    accounts = AccountService(services.db, secret)
    org = OrganisationService(services.db)
    ids, created = {}, []
    for p in DEMO_PEOPLE:
        try:
            ids[p.username] = accounts.user_id(p.username)
            continue
        except NotFound:
            pass
        password = secrets.token_urlsafe(15)
        user_id = accounts.create_user(p.username, display_name=p.display_name,
                                       password=password, centre=p.centre,
                                       platform_admin=p.admin, actor=ACTOR)
        uri = accounts.begin_totp_enrolment(user_id, actor=ACTOR).otpauth_uri
        # confirmed with the previous step's code: the current one stays usable,
        # so a demo user can log in at once (a used step is never accepted again)
        code = pyotp.TOTP(pyotp.parse_uri(uri).secret).at(time.time() - 30)
        accounts.confirm_totp(user_id, code, actor=ACTOR)
        if p.role is not None:
            org.grant_role(user_id, network_id, p.role, by=None)
        if p.areas:
            org.set_preferences(user_id, [areas[c] for c in p.areas], by=None)
        ids[p.username] = user_id
        created.append(DemoAccount(p.username, password, uri))
    if created:
        _append_credentials(credentials, created, base_url)
    name, area, members = DEMO_GROUP
    if all(g.name != name for g in org.list_groups(network_id, by=None)):
        group_id = org.add_group(network_id, name, areas[area], by=None)
        for username in members:
            org.add_group_member(group_id, ids[username], by=None)
    return ids


# -- the panels ---------------------------------------------------------------------------
def _ct_study(services: Services, pseudonym: str) -> str | None:
    """The de-identified UID of the enrolment's CT study (None before it arrived)."""
    with services.db.session() as s:
        return s.scalar(select(Study.study_uid)
                        .join(Enrolment, Enrolment.id == Study.enrolment_id)
                        .join(Series, Series.study_uid == Study.study_uid)
                        .where(Enrolment.pseudonym == pseudonym, Series.modality == "CT")
                        .limit(1))


def _existing_panel(services: Services, title: str) -> int | None:
    with services.db.session() as s:
        return s.scalar(select(Panel.id).where(Panel.title == title).limit(1))


def _panels(services: Services, network_id: int, areas: dict[str, int],
            people: dict[str, int], pseudonyms: dict[str, str]) -> list[int]:
    """The open panel (in review, with members, the CT shared, contributions and
    an information request) and a draft; return their IDs."""
    panels = PanelService(services.db)
    with services.db.engine.connect() as conn:
        who: dict[str, Person] = {}
        for username, user_id in people.items():
            person = load_person(conn, user_id)
            if person is not None:
                who[username] = person
    lead = who["lead"]
    ids = []
    title, patient, area, urgent = REVIEW_PANEL
    panel_id = _existing_panel(services, title)
    if panel_id is None:
        panel_id = panels.create(lead, pseudonym=pseudonyms[patient], network_id=network_id,
                                 area_id=areas[area], title=title, urgent=urgent, actor=ACTOR)
        study = _ct_study(services, pseudonyms[patient])
        if study is not None:
            panels.share_study(lead, panel_id, study, actor=ACTOR)
        for username in ("lindqvist", "ferrer", "guest"):
            panels.invite(lead, panel_id, people[username], actor=ACTOR)
        panels.transition(lead, panel_id, "inviting", actor=ACTOR)
        for username in ("lindqvist", "ferrer"):  # the guest's invitation stays open
            panels.respond(who[username], panel_id, True, actor=ACTOR)
        panels.transition(lead, panel_id, "review", actor=ACTOR)
        for username, kind, body in CONTRIBUTIONS:
            panels.add_contribution(who[username], panel_id, body, kind=kind, actor=ACTOR)
    ids.append(panel_id)
    title, patient, area, urgent = DRAFT_PANEL
    draft_id = _existing_panel(services, title)
    if draft_id is None:
        draft_id = panels.create(lead, pseudonym=pseudonyms[patient], network_id=network_id,
                                 area_id=areas[area], title=title, urgent=urgent, actor=ACTOR)
    ids.append(draft_id)
    return ids


def seed_network(services: Services, pseudonyms: dict[str, str]) -> tuple[Path, list[int]]:
    """The demo network, centres, people and panels (idempotent); ``pseudonyms``
    maps the sample set's patient IDs to their enrolments. Return the
    credentials file and the panel IDs (open panel first)."""
    s = services.settings
    base_url = f"http://{s.http_host}:{s.http_port}/app/"
    credentials = s.data_dir / CREDENTIALS_FILE
    network_id, areas = _network(services)
    people = _people(services, network_id, areas, credentials, base_url)
    return credentials, _panels(services, network_id, areas, people, pseudonyms)


def load_demo(services: Services, port: int, *, ct_slices: int = DEMO_CT_SLICES) -> str:
    """Seed, generate the sample set, send it through C-STORE, then seed the
    network, people and panels; return a summary (no secret in it).

    The sample set (synthetic, with planted fake identifiers) is generated into
    a temporary directory that is removed afterwards: the data directory only
    ever holds what the service itself de-identified.
    """
    from sample_data.generate import generate

    with tempfile.TemporaryDirectory(prefix="dicom-service-demo-") as tmp:
        sample_dir = Path(tmp)
        manifest = generate(sample_dir, ct_slices=ct_slices)
        patients = list(dict.fromkeys((p["patient_id"], p.get("issuer"))
                                      for p in manifest.patients))
        pseudonyms = seed(services, patients)
        files = [sample_dir / f["path"] for f in manifest.files]
        ok, failed = send_files(files, port, services.settings.ae_title)
    # the first enrolment of each patient ID (the sample set has one patient ID
    # under two issuers)
    by_patient: dict[str, str] = {}
    for (patient_id, _issuer), pseudonym in zip(patients, pseudonyms, strict=True):
        by_patient.setdefault(patient_id, pseudonym)
    credentials, panel_ids = seed_network(services, by_patient)
    s = services.settings
    return (f"demo loaded: {ok} instances stored, {failed} refused, enrolments "
            f"{', '.join(pseudonyms)}\n"
            f"  DICOM: {s.ae_title} at {s.dicom_host}:{port} (registered peer {DEMO_PEER} "
            f"from 127.0.0.1)\n"
            f"  HTTP:  http://{s.http_host}:{s.http_port}/health\n"
            f"  admin token: {s.data_dir / 'admin.token'}\n"
            f"  network {DEMO_NETWORK}: panel {panel_ids[0]} in review, panel "
            f"{panel_ids[1]} in draft\n"
            f"  log in at http://{s.http_host}:{s.http_port}/app/ as "
            f"{', '.join(p.username for p in DEMO_PEOPLE)}\n"
            f"  passwords and TOTP keys (otpauth URIs): {credentials} (readable by you only)")
