"""The panel life cycle: every pair of states, legal moves work, illegal ones
are refused naming both states."""

from __future__ import annotations

import itertools

import pytest

from dicom_service.care.access import STATES
from dicom_service.care.panels import TRANSITIONS
from dicom_service.errors import Conflict, Forbidden, NotFound
from tests.panels.conftest import World

# written out here, not read from the code under test
LEGAL = {
    ("draft", "inviting"), ("inviting", "review"), ("review", "meeting"),
    ("review", "outcome"), ("meeting", "outcome"), ("outcome", "closed"),
    ("closed", "archived"), ("closed", "inviting"), ("closed", "review"),
}
# a legal path from draft to each state
PATH = {
    "draft": (),
    "inviting": ("inviting",),
    "review": ("inviting", "review"),
    "meeting": ("inviting", "review", "meeting"),
    "outcome": ("inviting", "review", "outcome"),
    "closed": ("inviting", "review", "outcome", "closed"),
    "archived": ("inviting", "review", "outcome", "closed", "archived"),
}


def _panel_in(world: World, state: str) -> int:
    panel_id = world.new_panel(min_contributions=0)
    for step in PATH[state]:
        if step == "closed":
            world.panels.write_outcome(world.person("lead"), panel_id, "Treat with sirolimus.",
                                       actor=world.actor("lead"))
        world.move(panel_id, step)
    return panel_id


def test_the_table_is_the_documented_life_cycle() -> None:
    assert set(TRANSITIONS) == LEGAL
    assert {s for pair in LEGAL for s in pair} == set(STATES)


@pytest.mark.parametrize(("current", "to"), list(itertools.product(STATES, STATES)))
def test_every_pair_of_states(shared_world: World, current: str, to: str) -> None:
    world = shared_world
    panel_id = _panel_in(world, current)
    lead = world.person("lead")
    assert world.panels.get(lead, panel_id, actor="test").state == current
    if (current, to) in LEGAL:
        if current == "outcome":  # closing needs the outcome written
            world.panels.write_outcome(lead, panel_id, "Outcome.", actor="test")
        detail = world.panels.transition(lead, panel_id, to, actor=world.actor("lead"))
        assert detail.state == to
        assert world.panels.get(lead, panel_id, actor="test").state == to
    else:
        with pytest.raises(Conflict, match=f"^cannot go from {current} to {to}$"):
            world.panels.transition(lead, panel_id, to, actor=world.actor("lead"))
        assert world.panels.get(lead, panel_id, actor="test").state == current


def test_unknown_state_is_a_bad_value(world: World) -> None:
    panel_id = world.new_panel()
    with pytest.raises(ValueError, match="state must be one of"):
        world.panels.transition(world.person("lead"), panel_id, "cancelled", actor="test")


def test_only_the_lead_moves_the_state(world: World) -> None:
    panel_id = world.new_panel()
    world.move(panel_id, "inviting")
    world.member(panel_id, "expert1")
    for name in ("expert1", "coordinator", "colleague"):  # all see it, none leads it
        with pytest.raises(Forbidden, match="only the panel's lead"):
            world.panels.transition(world.person(name), panel_id, "review", actor="test")
    for name in ("outsider", "researcher", "admin", "expert2"):  # none sees it
        with pytest.raises(NotFound):
            world.panels.transition(world.person(name), panel_id, "review", actor="test")
    assert world.panels.get(world.person("lead"), panel_id, actor="test").state == "inviting"


def test_next_states_are_offered_to_the_lead_only(world: World) -> None:
    panel_id = world.new_panel()
    world.move(panel_id, "inviting", "review")
    assert set(world.panels.get(world.person("lead"), panel_id, actor="t").next_states) == {
        "meeting", "outcome"}
    assert world.panels.get(world.person("coordinator"), panel_id, actor="t").next_states == ()
