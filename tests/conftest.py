"""Shared fixtures: the synthetic sample set and a running service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sample_data.generate import Manifest, generate
from tests.support.service import ServiceProcess

CENTRE = "Hospital A"
PEER = "HOSP_A_PACS"


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """The generated sample set (seeded), shared read-only by every test."""
    directory = tmp_path_factory.mktemp("sample")
    return directory, generate(directory, ct_slices=100)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    """A configured but not yet started service with centre CENTRE and peer PEER."""
    svc = ServiceProcess(tmp_path / "data")
    svc.setup_peer(CENTRE, PEER)
    try:
        yield svc
    finally:
        svc.stop()
