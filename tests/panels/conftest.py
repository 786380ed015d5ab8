"""A small organisation for the panel tests: one network with two thematic
areas, two member centres, and a person of every kind.

People are plain ``User`` rows (accounts and login are tested elsewhere); the
policy sees them through :func:`dicom_service.care.access.load_person`, always
reloaded so that a changed or expired role takes effect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicom_service.app import Services, build_services
from dicom_service.care.access import Person, load_person
from dicom_service.care.organisation import OrganisationService
from dicom_service.care.panels import PanelService
from dicom_service.config import Settings
from dicom_service.db.models import User

# who exists: name -> (centre, roles in the network, thematic areas)
PEOPLE: dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]] = {
    "lead": ("Hospital A", ("health_professional",), ("VASCA",)),
    "colleague": ("Hospital A", ("health_professional",), ("VASCA",)),
    "expert1": ("Hospital B", ("health_professional",), ("VASCA",)),
    "expert2": ("Hospital B", ("health_professional",), ("VASCA",)),
    "expert3": ("Hospital B", ("dispatcher",), ("VASCA", "HHT")),
    "no_area": ("Hospital B", ("health_professional",), ()),
    "other_area": ("Hospital B", ("health_professional",), ("HHT",)),
    "guest": ("Outside Clinic", ("guest",), ("VASCA",)),
    "coordinator": ("Hospital B", ("coordinator",), ()),
    "researcher": (None, ("researcher",), ("VASCA",)),
    "outsider": ("Hospital B", (), ()),
    "admin": (None, (), ()),
}
PATIENT_ID = "PAT-SECRET-4711"
ISSUER = "HOSP-A"


@dataclass
class World:
    services: Services
    org: OrganisationService
    panels: PanelService
    network_id: int
    areas: dict[str, int]
    centres: dict[str, int]
    users: dict[str, int]
    pseudonym: str = ""

    def person(self, name: str) -> Person:
        with self.services.db.engine.connect() as conn:
            found = load_person(conn, self.users[name])
        assert found is not None
        return found

    def actor(self, name: str) -> str:
        return f"user:{self.users[name]}"

    def new_panel(self, *, min_contributions: int = 2, title: str = "Which treatment?") -> int:
        return self.panels.create(self.person("lead"), pseudonym=self.pseudonym,
                                  network_id=self.network_id, area_id=self.areas["VASCA"],
                                  title=title, min_contributions=min_contributions,
                                  actor=self.actor("lead"))

    def move(self, panel_id: int, *states: str, by: str = "lead") -> None:
        for state in states:
            self.panels.transition(self.person(by), panel_id, state, actor=self.actor(by))

    def member(self, panel_id: int, name: str) -> None:
        """Invite ``name`` and accept."""
        self.panels.invite(self.person("lead"), panel_id, self.users[name],
                           actor=self.actor("lead"))
        self.panels.respond(self.person(name), panel_id, True, actor=self.actor(name))

    def contribute(self, panel_id: int, name: str, body: str = "My opinion.") -> int:
        return self.panels.add_contribution(self.person(name), panel_id, body,
                                            actor=self.actor(name))


def build_world(data_dir: Path) -> World:
    services = build_services(Settings(data_dir=data_dir, server_secret=b"s" * 32,
                                       admin_token="t" * 32))
    org = OrganisationService(services.db)
    network_id = org.add_network("ERN-VASCERN", by=None)
    areas = {code: org.add_area(network_id, code, f"{code} working group", by=None)
             for code in ("VASCA", "HHT")}
    centres = {}
    for name in ("Hospital A", "Hospital B", "Outside Clinic"):
        centres[name] = services.care.add_centre(name, actor="test")
    for name in ("Hospital A", "Hospital B"):
        org.join_network(centres[name], network_id, by=None)
    users = {}
    with services.db.session() as s:
        for name, (centre, _, _) in PEOPLE.items():
            user = User(username=name, display_name=name.title(),
                        centre_id=centres[centre] if centre else None,
                        password_hash="not-a-hash", is_platform_admin=name == "admin")
            s.add(user)
            s.flush()
            users[name] = user.id
    for name, (_, roles, codes) in PEOPLE.items():
        for role in roles:
            org.grant_role(users[name], network_id, role, by=None)
        if codes:
            org.set_preferences(users[name], [areas[c] for c in codes], by=None)
    world = World(services, org, PanelService(services.db), network_id, areas, centres, users)
    world.pseudonym = services.care.enrol_by(world.person("lead"), PATIENT_ID, ISSUER,
                                             consent_care=True, form_version="v2",
                                             actor=world.actor("lead"))
    return world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = build_world(tmp_path / "data")
    try:
        yield built
    finally:
        built.services.close()


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world for the many cases of a table-driven test (each case makes its
    own panel)."""
    built = build_world(tmp_path_factory.mktemp("panels") / "data")
    try:
        yield built
    finally:
        built.services.close()
