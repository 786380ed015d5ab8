"""DICOMweb read performance: our service vs Orthanc with its DICOMweb plugin.

Both hold the same CT series (``sample_data.generate.write_ct_series``, 300 x
512^2 by default), sent by DCMTK storescu. Everything runs inside one private
network namespace on 127.0.0.1; the script re-executes itself under
``unshare -n`` first.

    .venv/bin/python benchmarks/dicomweb.py            # full run
    .venv/bin/python benchmarks/dicomweb.py --quick    # 60 instances, fewer repeats

Figures per target:

* ``rendered``: ``.../instances/{i}/frames/1/rendered`` (Accept: image/jpeg, the
  server's default rendering), with 1 and 4 concurrent clients (a thread pool,
  one keep-alive ``http.client`` connection per thread). Every frame of the
  series is requested exactly once per run and each run uses its own
  ``quality`` value (90, 89, ...), so no run is answered from a cache of
  rendered outputs. Both servers run side by side and take turns: ``--rounds``
  rounds (default 5), each with one run per client count and target, after
  one warm-up pass over the series at another size. Frames/s (wall clock) is
  the median of the rounds (every round's in ``runs_frames_per_s``); p50/p95
  latency over every request.
  ``server_cpu_ms_per_frame``: CPU time of the server's processes per frame (less
  sensitive than wall-clock figures to other load on the machine).
* ``library``: the rendering library alone (no HTTP), ms per frame.
* ``series_metadata``: ``.../series/{se}/metadata`` (``application/dicom+json``),
  repeated; median and p95 latency.
* ``qido_studies``: ``/dicom-web/studies?limit=100``, repeated; median and p95.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402

from sample_data.generate import write_ct_series  # noqa: E402
from tests.support.peers import (  # noqa: E402
    LOOPBACK,
    Orthanc,
    PeerError,
    ensure_private_netns,
    storescu,
)
from tests.support.service import ServiceProcess  # noqa: E402

CALLING_AET = "BENCHSCU"
CENTRE = "BENCH-CENTRE"
PATIENT_ID = "BENCH-0001"
ISSUER = "HOSP-A"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Target:
    name: str
    port: int
    headers: dict[str, str]
    study: str
    series: str
    sops: list[str]  # in slice order
    pid: int | None = None  # the server process, for its CPU time


def _process_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """utime+stime of ``pid`` and its live children (``serve`` runs extra
    listener processes), seconds (Linux ``/proc``)."""
    if pid is None:
        return None
    total = _process_cpu(pid)
    if total is None:
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += _process_cpu(int(child)) or 0.0
    return total


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ms(value: float) -> float:
    return round(value * 1000.0, 2)


class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1 (never through a proxy)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.conn = http.client.HTTPConnection(LOOPBACK, port, timeout=120)

    def get(self, path: str, accept: str) -> tuple[int, bytes]:
        headers = {**self.headers, "Accept": accept}
        try:
            self.conn.request("GET", path, headers=headers)
            resp = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # a dropped keep-alive connection: retry once
            self.conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=120)
            self.conn.request("GET", path, headers=headers)
            resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self.conn.close()


def run_pool(target: Target, paths: list[str], accept: str, clients: int
             ) -> tuple[float, list[float], int]:
    """GET every path once with ``clients`` threads; (wall seconds, latencies, bytes)."""
    work: queue.Queue[str] = queue.Queue()
    for p in paths:
        work.put(p)
    latencies: list[float] = []
    errors: list[str] = []
    total = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def worker() -> None:
        client = Client(target.port, target.headers)
        start.wait()
        try:
            while True:
                try:
                    path = work.get_nowait()
                except queue.Empty:
                    return
                t0 = time.perf_counter()
                status, body = client.get(path, accept)
                elapsed = time.perf_counter() - t0
                with lock:
                    if status != 200:
                        errors.append(f"HTTP {status}: {body[:200]!r}")
                    latencies.append(elapsed)
                    total[0] += len(body)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise PeerError(f"{target.name}: {len(errors)} failed requests, first: {errors[0]}")
    return wall, latencies, total[0]


def frame_path(target: Target, sop: str, quality: int) -> str:
    return (f"/dicom-web/studies/{target.study}/series/{target.series}/instances/{sop}"
            f"/frames/1/rendered?quality={quality}")


def warm_up(target: Target) -> None:
    """Touch every instance once, at a size and quality no measured run asks for
    (so no measured frame comes from a cache of rendered outputs): both servers
    then start the measured rounds with the series read once, as a viewer's
    second scroll through it finds them."""
    run_pool(target, [frame_path(target, sop, 50) + "&viewport=64,64" for sop in target.sops],
             "image/jpeg", 1)


def measure_rendered(target: Target, clients: int, quality: int) -> dict[str, Any]:
    """One run: every frame of the series once, at ``quality``, by ``clients`` clients."""
    paths = [frame_path(target, sop, quality) for sop in target.sops]
    cpu0 = cpu_seconds(target.pid)
    wall, lat, nbytes = run_pool(target, paths, "image/jpeg", clients)
    cpu1 = cpu_seconds(target.pid)
    return {"frames": len(paths), "wall_s": wall, "latencies": lat, "bytes": nbytes,
            "cpu_s": (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
            "quality": quality}


def summarise_rendered(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs (frames/s; CPU per frame), latency percentiles
    over every run's requests, and every run's frames/s."""
    fps = [run["frames"] / run["wall_s"] for run in runs]
    cpu = [run["cpu_s"] / run["frames"] * 1000 for run in runs if run["cpu_s"] is not None]
    latencies = [value for run in runs for value in run["latencies"]]
    frames = sum(run["frames"] for run in runs)
    return {
        "frames_per_s": round(statistics.median(fps), 1),
        "runs_frames_per_s": [round(v, 1) for v in fps],
        "server_cpu_ms_per_frame": round(statistics.median(cpu), 2) if cpu else None,
        "frames": frames,
        "p50_ms": ms(percentile(latencies, 50)),
        "p95_ms": ms(percentile(latencies, 95)),
        "mean_kb": round(sum(run["bytes"] for run in runs) / frames / 1024, 1),
        "qualities": [run["quality"] for run in runs],
    }


def bench_rendered(targets: Sequence[Target], concurrency: Sequence[int], rounds: int,
                   failed: Callable[[Target, Exception], None]) -> dict[str, dict[str, Any]]:
    """Rendered frames/s of each target with each client count, over ``rounds``
    rounds. The targets take turns within every round (who goes first
    alternates), so that drift on the machine touches them alike; each run has
    its own ``quality`` (90, 89, ...), the same for every target."""
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        t.name: {c: [] for c in concurrency} for t in targets}
    alive = list(targets)
    for target in targets:
        warm_up(target)
    for round_ in range(rounds):
        order = alive if round_ % 2 == 0 else list(reversed(alive))
        for i, clients in enumerate(concurrency):
            quality = 90 - (round_ * len(concurrency) + i)
            for target in order:
                if target not in alive:
                    continue
                try:
                    run = measure_rendered(target, clients, quality)
                except Exception as exc:
                    alive.remove(target)
                    failed(target, exc)
                    continue
                runs[target.name][clients].append(run)
                log(f"[{target.name}] round {round_ + 1} rendered c={clients} q={quality}: "
                    f"{run['frames'] / run['wall_s']:.1f} frames/s")
    out: dict[str, dict[str, Any]] = {}
    for target in alive:
        out[target.name] = {f"c{c}": summarise_rendered(runs[target.name][c])
                            for c in concurrency}
        log(f"[{target.name}] rendered: {out[target.name]}")
    return out


def bench_repeated(target: Target, path: str, accept: str, repeat: int) -> dict[str, Any]:
    client = Client(target.port, target.headers)
    try:
        status, body = client.get(path, accept)  # warm-up
        if status != 200:
            raise PeerError(f"{target.name} {path}: HTTP {status}: {body[:200]!r}")
        lat = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            status, body = client.get(path, accept)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                raise PeerError(f"{target.name} {path}: HTTP {status}")
    finally:
        client.close()
    return {"median_ms": ms(statistics.median(lat)), "p95_ms": ms(percentile(lat, 95)),
            "bytes": len(body), "repeat": repeat}


def bench_library(files: list[Path]) -> dict[str, Any]:
    """The rendering library alone, in this process: ms per distinct 512^2 CT frame
    (ranged read, window LUT, JPEG), first with the header parsed from the file,
    then with the header cached (as for a second request with other parameters)."""
    from dicom_service.render import Renderer, RenderParams

    renderer = Renderer(cache_bytes=0)
    out: dict[str, Any] = {}
    for label, quality in (("file_header_ms", 90), ("cached_header_ms", 89)):
        lat = []
        for path in files:
            t0 = time.perf_counter()
            renderer.render(path, 0, RenderParams(quality=quality))
            lat.append(time.perf_counter() - t0)
        out[label] = {"p50": ms(percentile(lat, 50)), "p95": ms(percentile(lat, 95))}
    log(f"[library] {out}")
    return out


def original_uids(files: list[Path]) -> tuple[str, str, list[str]]:
    sops = []
    study = series = ""
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        sops.append(str(ds.SOPInstanceUID))
    return study, series, sops


def start_orthanc(workdir: Path, files: list[Path]) -> tuple[Orthanc, Target]:
    server = Orthanc(workdir=workdir, dicomweb=True)
    server.start()
    result = storescu(files, LOOPBACK, server.dicom_port, server.aet, CALLING_AET)
    if result.returncode != 0:
        raise PeerError(f"storescu to Orthanc failed: {result.stderr[-500:]}")
    if server.count_instances() != len(files):
        raise PeerError("Orthanc did not store every instance")
    study, series, sops = original_uids(files)
    return server, Target("orthanc", server.http_port, {}, study, series, sops,
                          server.proc.pid if server.proc else None)


def start_ours(workdir: Path, files: list[Path]) -> tuple[ServiceProcess, Target]:
    svc = ServiceProcess(workdir / "data")
    svc.setup_peer(CENTRE, CALLING_AET)
    pseudonym = svc.enrol(CENTRE, PATIENT_ID, ISSUER)
    svc.start()
    result = storescu(files, LOOPBACK, svc.dicom_port, svc.ae_title, CALLING_AET)
    if result.returncode != 0:
        raise PeerError(f"storescu to our service failed: {result.stderr[-500:]}")
    token = svc.cli("tokens", "issue", "--enrolment", pseudonym).stdout.strip()
    rows = svc.query("select study_uid, series_uid, sop_uid from instances "
                     "order by instance_number")
    if len(rows) != len(files):
        raise PeerError(f"our service indexed {len(rows)} instances, expected {len(files)}")
    target = Target("ours", svc.http_port, {"Authorization": f"Bearer {token}"},
                    rows[0][0], rows[0][1], [r[2] for r in rows],
                    svc.proc.pid if svc.proc else None)
    return svc, target


def bench_target(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """Series metadata and QIDO latencies of one target."""
    result: dict[str, Any] = {}
    result["series_metadata"] = bench_repeated(
        target, f"/dicom-web/studies/{target.study}/series/{target.series}/metadata",
        "application/dicom+json", args.repeat)
    log(f"[{target.name}] series metadata: {result['series_metadata']}")
    result["qido_studies"] = bench_repeated(target, "/dicom-web/studies?limit=100",
                                            "application/dicom+json", args.repeat * 3)
    log(f"[{target.name}] QIDO studies: {result['qido_studies']}")
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 instances, fewer repeats")
    parser.add_argument("--instances", type=int, default=None, help="series size (300)")
    parser.add_argument("--concurrency", default="1,4",
                        help="client counts for the rendered runs (default 1,4)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of rendered runs; figures are medians (default 5, "
                             "2 with --quick)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="repeats of the metadata request (default 20, 5 with --quick)")
    parser.add_argument("--targets", default="ours,orthanc")
    parser.add_argument("--workdir", default=None, help="where the temp directory goes")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.instances = args.instances or (60 if args.quick else 300)
    args.repeat = args.repeat or (5 if args.quick else 20)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_private_netns()
    root = Path(tempfile.mkdtemp(prefix="dicomweb-bench-", dir=args.workdir))
    result: dict[str, Any] = {
        "benchmark": "dicomweb",
        "instances": args.instances,
        "series": f"write_ct_series(n={args.instances}, size=512), Explicit VR LE",
        "env": {"cpus": os.cpu_count(), "python": platform.python_version(),
                "load_1min_at_start": round(os.getloadavg()[0], 2)},
        "results": {},
        "ratios": {},
        "errors": {},
    }
    try:
        files = write_ct_series(root / "series", n=args.instances)
        result["library"] = bench_library(files)
        starters: dict[str, Callable[[Path, list[Path]], tuple[Any, Target]]] = {
            "ours": start_ours, "orthanc": start_orthanc}
        servers: list[Any] = []
        targets: list[Target] = []

        def failed(name: str, exc: Exception) -> None:  # report, go on with the others
            result["errors"][name] = f"{type(exc).__name__}: {exc}"[:2000]
            log(f"[{name}] failed: {result['errors'][name]}")

        try:
            for name in args.targets:  # all running at once: their runs alternate
                workdir = root / name
                workdir.mkdir()
                try:
                    log(f"[{name}] starting and loading {len(files)} instances")
                    server, target = starters[name](workdir, files)
                except Exception as exc:
                    failed(name, exc)
                    continue
                servers.append(server)
                targets.append(target)
            rendered = bench_rendered(targets, args.concurrency, args.rounds,
                                      lambda target, exc: failed(target.name, exc))
            for target in targets:
                if target.name not in rendered:
                    continue
                try:
                    result["results"][target.name] = {"rendered": rendered[target.name],
                                                      **bench_target(target, args)}
                except Exception as exc:
                    failed(target.name, exc)
        finally:
            for server in servers:
                server.stop()
        ours, theirs = result["results"].get("ours"), result["results"].get("orthanc")
        if ours and theirs:
            for c in args.concurrency:
                key = f"c{c}"
                result["ratios"][f"rendered_fps_{key}_ours_over_orthanc"] = round(
                    ours["rendered"][key]["frames_per_s"]
                    / theirs["rendered"][key]["frames_per_s"], 2)
                cpu_ours = ours["rendered"][key]["server_cpu_ms_per_frame"]
                cpu_theirs = theirs["rendered"][key]["server_cpu_ms_per_frame"]
                if cpu_ours and cpu_theirs:
                    result["ratios"][f"rendered_cpu_per_frame_{key}_orthanc_over_ours"] = round(
                        cpu_theirs / cpu_ours, 2)
            result["ratios"]["series_metadata_ours_over_orthanc_time"] = round(
                ours["series_metadata"]["median_ms"] / theirs["series_metadata"]["median_ms"], 3)
            result["ratios"]["qido_ours_over_orthanc_time"] = round(
                ours["qido_studies"]["median_ms"] / theirs["qido_studies"]["median_ms"], 3)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    line = json.dumps(result)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line, flush=True)
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
