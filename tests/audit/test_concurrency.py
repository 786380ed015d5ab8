"""Several writers at once, threads of one process and processes on one data
directory (as ``serve`` with its ``dicom-worker`` processes): the chain stays
intact and gapless."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from collections import Counter
from pathlib import Path

from dicom_service.app import Services
from dicom_service.care.tokens import TokenService
from tests.audit.conftest import (
    CENTRE,
    ISSUER,
    PATIENT,
    ingest,
    open_services,
    rows,
    verify,
    write_series,
)

ROUNDS = 6


def _writer(services: Services, name: str, files: list[Path], pseudonym: str) -> None:
    """One writer: every kind of audit write, interleaved."""
    tokens = TokenService(services.db)
    for n in range(ROUNDS):
        services.care.add_centre(f"{name} centre {n}", actor=f"cli:{name}")
        token_id, _ = tokens.issue(pseudonym, actor=f"cli:{name}")
        ingest(services, files[n:n + 1], actor=f"peer:{name}")
        services.reads.note(f"user:{name}", "study.read", "study", f"2.25.{n}")
        services.reads.flush()
        tokens.revoke(token_id, actor=f"cli:{name}")


def _process(data_dir: Path, name: str, files: list[Path], pseudonym: str,
             start: multiprocessing.synchronize.Barrier) -> None:
    services = open_services(data_dir)
    try:
        start.wait(120)
        _writer(services, name, files, pseudonym)
    finally:
        services.close()


def _setup(services: Services) -> str:
    services.care.add_centre(CENTRE, actor="cli")
    return services.care.enrol(CENTRE, PATIENT, ISSUER, actor="cli")


def _check(services: Services, writers: list[str]) -> None:
    result = verify(services)
    assert result.ok, result.problems
    log = rows(services)
    assert [r["id"] for r in log] == list(range(1, len(log) + 1))
    writer_of = [str(r["actor"]).split(":", 1)[1] for r in log if r["actor"] != "cli"]
    # per round: centre, token issue, instance, read, token revoke
    assert Counter(writer_of) == {name: 5 * ROUNDS for name in writers}
    # the writers really ran at the same time: their rows interleave
    switches = sum(a != b for a, b in itertools.pairwise(writer_of))
    assert switches > len(writers) - 1, writer_of


def test_threads_writing_at_once_keep_the_chain(services: Services, tmp_path: Path) -> None:
    pseudonym = _setup(services)
    writers = [f"t{n}" for n in range(4)]
    files = {name: write_series(tmp_path / name, ROUNDS, seed=n + 10)
             for n, name in enumerate(writers)}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            _writer(services, name, files[name], pseudonym)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    _check(services, writers)


def test_processes_writing_at_once_keep_the_chain(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    services = open_services(data_dir)
    try:
        pseudonym = _setup(services)
        writers = ["p0", "p1", "p2"]
        files = {name: write_series(tmp_path / name, ROUNDS, seed=n + 20)
                 for n, name in enumerate(writers)}
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(len(writers) + 1)
        procs = [ctx.Process(target=_process, args=(data_dir, name, files[name], pseudonym,
                                                    start))
                 for name in writers]
        for p in procs:
            p.start()
        # and this process writes at the same time
        start.wait(120)
        _writer(services, "main", write_series(tmp_path / "main", ROUNDS, seed=30), pseudonym)
        for p in procs:
            p.join(180)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        _check(services, [*writers, "main"])
    finally:
        services.close()
