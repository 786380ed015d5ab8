"""CPU cost of the ingest pipeline per instance, in one process, without the network.

Builds a throw-away service (centre, enrolment) in a temporary data directory,
writes a synthetic CT series (``sample_data.generate.write_ct_series``), and
feeds each instance's data set bytes through what a C-STORE does after
pynetdicom has assembled them: ``parse_dataset`` then ``pipeline.ingest``
(de-identify, encode, fsynced write, index, audit), all with one ingest
context as one association has (``--no-context``: each instance on its own). With ``--network`` the
instances come instead over one association from DCMTK ``storescu`` (``-pdu
131072``, as ``benchmarks/ingest.py``) to the real listener started in this
process, so that pynetdicom's receive path is counted too. Prints the process
CPU time (user + system, every thread) per instance and, in process, the
median wall time of ``pipeline.ingest``; with ``--profile N`` also the N
biggest cumulative entries of a cProfile run (every thread).

Usage::

    .venv/bin/python benchmarks/ingest_profile.py                 # 300 x 512^2
    .venv/bin/python benchmarks/ingest_profile.py --n 2000 --size 64 --repeat 3
    .venv/bin/python benchmarks/ingest_profile.py --profile 40
    .venv/bin/python benchmarks/ingest_profile.py --repeat 3 --no-context
    .venv/bin/python benchmarks/ingest_profile.py --network --repeat 3 --profile 40

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydicom.filereader import _read_file_meta_info, read_preamble  # noqa: E402

from dicom_service.app import Services, build_services  # noqa: E402
from dicom_service.config import Settings  # noqa: E402
from dicom_service.dicom.parse import parse_dataset  # noqa: E402
from dicom_service.ingest.pipeline import Sender  # noqa: E402
from dicom_service.ingest.scp import DicomListener  # noqa: E402
from sample_data.generate import write_ct_series  # noqa: E402

CENTRE = "Profile Centre"
PATIENT_ID = "BENCH-0001"
ISSUER = "HOSP-A"
PEER = "PROFILE_SCU"


def _data_sets(files: list[Path]) -> list[tuple[bytes, str]]:
    """Each file's data set bytes (no preamble, no file meta) and transfer syntax."""
    out = []
    for path in files:
        raw = path.read_bytes()
        fp = io.BytesIO(raw)
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
        out.append((raw[fp.tell():], str(meta.TransferSyntaxUID)))
    return out


@contextmanager
def _profiled(profilers: list[cProfile.Profile]) -> Iterator[None]:
    """Profile this thread and every thread started meanwhile (one profiler each)."""
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.runcall(original, self)

    threading.Thread.run = run  # type: ignore[method-assign]
    main = cProfile.Profile()
    profilers.append(main)
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.Thread.run = original  # type: ignore[method-assign]


def _in_process(data_sets: list[tuple[bytes, str]], services: Services, context: bool,
                walls: list[float]) -> Callable[[], None]:
    sender = Sender(centre_id=services.care.centre_id(CENTRE), actor=f"peer:{PEER}")
    pipeline = services.pipeline

    def send() -> None:
        with pipeline.context() as shared:  # what one association shares
            for raw, ts in data_sets:
                ds = parse_dataset(raw, ts)
                started = time.perf_counter()
                pipeline.ingest(ds, ts, sender, context=shared if context else None)
                walls.append(time.perf_counter() - started)
    return send


def _over_network(files: list[Path], services: Services) -> Callable[[], None]:
    services.care.add_peer(PEER, CENTRE, None, actor="profile")

    def send() -> None:
        listener = DicomListener(services.settings, services.care, services.pipeline)
        listener.start()
        try:
            subprocess.run(["storescu", "-aet", PEER, "-aec", services.settings.ae_title,
                            "-pdu", "131072", "127.0.0.1", str(listener.port),
                            *map(str, files)], check=True,
                           env={**os.environ, "TCP_NODELAY": "1"})
        finally:
            listener.stop()
    return send


def run(n: int, size: int, repeat: int, profile: int, network: bool,
        context: bool = True) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ingest-profile-") as tmp:
        work = Path(tmp)
        files = write_ct_series(work / "series", n=n, size=size)
        data_sets = _data_sets(files)
        per_instance_ms: list[float] = []
        wall_ms: list[float] = []
        stats_text = ""
        for r in range(repeat + (1 if profile else 0)):
            settings = Settings(data_dir=work / f"data{r}", server_secret=b"p" * 32,
                                dicom_port=0)
            services = build_services(settings)
            services.care.add_centre(CENTRE, actor="profile")
            services.care.enrol(CENTRE, PATIENT_ID, ISSUER, actor="profile")
            walls: list[float] = []
            send = (_over_network(files, services) if network
                    else _in_process(data_sets, services, context, walls))
            started = time.process_time()
            if r == repeat:
                profilers: list[cProfile.Profile] = []
                with _profiled(profilers):
                    send()
                out = io.StringIO()
                stats = pstats.Stats(profilers[0], stream=out)
                for other in profilers[1:]:
                    stats.add(other)
                stats.sort_stats("cumulative").print_stats(profile)
                stats_text = out.getvalue()
            else:
                send()
                per_instance_ms.append((time.process_time() - started) * 1000 / n)
                if walls:
                    wall_ms.append(statistics.median(walls) * 1000)
            stored = sum(1 for _ in (work / f"data{r}" / "store" / "instances").rglob("*.dcm"))
            if stored != n:
                raise SystemExit(f"stored {stored} instances, expected {n}")
            services.close()
        if stats_text:
            print(stats_text)
    result: dict[str, object] = {
        "n": n, "size": size, "network": network, "context": context,
        "cpu_ms_per_instance": [round(v, 3) for v in per_instance_ms],
        "best_cpu_ms_per_instance": round(min(per_instance_ms), 3)}
    if wall_ms:
        result["median_ingest_wall_ms"] = [round(v, 3) for v in wall_ms]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="instances (default 300)")
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs (default 1)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile one run and print its N top cumulative entries")
    parser.add_argument("--network", action="store_true",
                        help="send with storescu to the listener instead of calling the pipeline")
    parser.add_argument("--no-context", action="store_true",
                        help="in process: ingest each instance without a shared context")
    args = parser.parse_args()
    print(json.dumps(run(args.n, args.size, args.repeat, args.profile, args.network,
                         not args.no_context)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
