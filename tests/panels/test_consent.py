"""Enrolment and consent by a clinician; what withdrawing consent for care does."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from dicom_service.care.access import image_scope
from dicom_service.care.enrolment import WITHDRAWAL_NOTE
from dicom_service.care.tokens import TokenService
from dicom_service.db.models import AuditEvent, ConsentRecord, Instance, PanelStudy
from dicom_service.errors import Conflict, Forbidden, IngestRefused, NotFound, Refusal
from dicom_service.ingest.pipeline import Sender
from sample_data.generate import write_ct_series
from tests.panels.conftest import ISSUER, PATIENT_ID, World


def _consents(world: World) -> list[tuple[str, bool, str, str | None]]:
    with world.services.db.session() as s:
        return [(r.kind, r.granted, r.recorded_by, r.form_version)
                for r in s.scalars(select(ConsentRecord).order_by(ConsentRecord.id))]


def _ingest(world: World, directory: Path) -> str:
    """Store a small CT series of the enrolled patient; return its study UID."""
    sender = Sender(centre_id=world.centres["Hospital A"], actor="peer:TEST_PACS")
    study = ""
    for path in write_ct_series(directory, n=3, size=32, patient_id=PATIENT_ID, issuer=ISSUER):
        ds = pydicom.dcmread(path)
        result = world.services.pipeline.ingest(ds, str(ds.file_meta.TransferSyntaxUID), sender)
        study = result.study_uid
    return study


def test_enrolment_records_the_three_consents(world: World) -> None:
    lead = world.actor("lead")
    assert _consents(world) == [("care", True, lead, "v2"), ("registries", False, lead, "v2"),
                                ("research", False, lead, "v2")]
    summary = world.services.care.change_consent(world.person("lead"), world.pseudonym,
                                                 "research", True, form_version="v3",
                                                 actor=lead)
    assert (summary.consent_care, summary.consent_research) == (True, True)
    history = world.services.care.consent_history(world.person("colleague"), world.pseudonym)
    assert [(c.kind, c.granted, c.form_version) for c in history][-1] == ("research", True, "v3")


def test_consent_for_care_is_mandatory(world: World) -> None:
    with pytest.raises(ValueError, match="consent for care is mandatory"):
        world.services.care.enrol_by(world.person("lead"), "PAT-OTHER-1", consent_care=False,
                                     actor="t")
    assert len(world.services.care.centre_enrolments(world.person("lead"))) == 1


@pytest.mark.parametrize("name", ["coordinator", "researcher", "admin", "outsider", "guest"])
def test_only_clinicians_enrol(world: World, name: str) -> None:
    person = world.person(name)
    if name == "guest":  # a guest has a centre but no clinical role
        assert person.centre_id is not None
    with pytest.raises(Forbidden, match="only health professionals"):
        world.services.care.enrol_by(person, "PAT-OTHER-1", consent_care=True, actor="t")


def test_other_centres_do_not_see_the_enrolment(world: World) -> None:
    care = world.services.care
    assert care.centre_enrolments(world.person("expert1")) == []
    with pytest.raises(NotFound):
        care.enrolment_of(world.person("expert1"), world.pseudonym)
    with pytest.raises(NotFound):
        care.change_consent(world.person("expert1"), world.pseudonym, "care", False, actor="t")
    with pytest.raises(Conflict, match="already enrolled"):
        care.enrol_by(world.person("colleague"), PATIENT_ID, ISSUER, consent_care=True,
                      actor="t")


def test_withdrawing_consent_for_care(world: World, tmp_path: Path) -> None:
    services = world.services
    study = _ingest(world, tmp_path / "ct")
    store = services.settings.data_dir / "store"
    assert len(list(store.rglob("*.dcm"))) == 3
    panel_id = world.new_panel()
    lead = world.person("lead")
    world.panels.share_study(lead, panel_id, study, actor="t")
    world.move(panel_id, "inviting")
    world.member(panel_id, "expert1")
    world.move(panel_id, "review")
    closed_before = world.new_panel(min_contributions=0, title="Earlier question")
    world.move(closed_before, "inviting", "review", "outcome")
    world.panels.write_outcome(lead, closed_before, "Earlier outcome.", actor="t")
    world.move(closed_before, "closed")
    tokens = TokenService(services.db)
    _, token = tokens.issue(world.pseudonym, actor="t")
    with services.db.engine.connect() as conn:
        assert image_scope(conn, world.person("expert1")).studies == {study}

    world.services.care.change_consent(lead, world.pseudonym, "care", False, form_version="v2",
                                       actor=world.actor("lead"))

    assert list(store.rglob("*.dcm")) == []
    assert tokens.verify(token) is None
    detail = world.panels.get(lead, panel_id, actor="t")
    assert (detail.state, detail.outcome, detail.studies) == ("closed", WITHDRAWAL_NOTE, ())
    assert detail.rounds is not None and detail.rounds[0].outcome == WITHDRAWAL_NOTE
    earlier = world.panels.get(lead, closed_before, actor="t")
    assert earlier.outcome == "Earlier outcome."  # a closed panel is left as it was
    with services.db.session() as s:
        assert s.scalars(select(Instance)).all() == []
        assert s.scalars(select(PanelStudy)).all() == []
        events = s.execute(select(AuditEvent.action, AuditEvent.object_id, AuditEvent.detail)
                           .order_by(AuditEvent.id)).all()
    with services.db.engine.connect() as conn:
        scope = image_scope(conn, world.person("expert1"))
        assert not scope.studies and not image_scope(conn, lead).enrolments
    assert _consents(world)[-1] == ("care", False, world.actor("lead"), "v2")
    assert ("consent.withdraw", world.pseudonym,
            "kind=care instances_removed=3 tokens_revoked=1 panels_closed=1") in events
    assert ("panel.close", str(panel_id), "from=review reason=consent-withdrawn") in events
    # nothing identifying anywhere in the data directory (database, audit, store)
    for path in services.settings.data_dir.rglob("*"):
        if path.is_file():
            assert PATIENT_ID.encode() not in path.read_bytes(), path.name
    # the enrolment takes no new images
    with pytest.raises(IngestRefused) as refused:
        _ingest(world, tmp_path / "again")
    assert refused.value.reason is Refusal.NO_CONSENT_FOR_CARE
    assert list(store.rglob("*.dcm")) == []
    # nor new panels
    with pytest.raises(Conflict, match="consent for care is not active"):
        world.new_panel()


def test_only_the_enrolments_studies_are_shared(world: World, tmp_path: Path) -> None:
    study = _ingest(world, tmp_path / "ct")
    other = world.services.care.enrol_by(world.person("lead"), "PAT-OTHER-2", ISSUER,
                                         consent_care=True, actor="t")
    other_panel = world.panels.create(world.person("lead"), pseudonym=other,
                                      network_id=world.network_id,
                                      area_id=world.areas["VASCA"], title="Other", actor="t")
    with pytest.raises(NotFound, match="no such study of this panel's patient"):
        world.panels.share_study(world.person("lead"), other_panel, study, actor="t")
    with pytest.raises(ValueError, match="study UID must be digits"):
        world.panels.share_study(world.person("lead"), other_panel, "../etc", actor="t")
    panel_id = world.new_panel()
    world.panels.share_study(world.person("lead"), panel_id, study, actor="t")
    with pytest.raises(Conflict, match="shared with this panel already"):
        world.panels.share_study(world.person("lead"), panel_id, study, actor="t")
    world.panels.unshare_study(world.person("lead"), panel_id, study, actor="t")
    assert world.panels.get(world.person("lead"), panel_id, actor="t").studies == ()
