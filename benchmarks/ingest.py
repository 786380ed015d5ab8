"""Ingest throughput: DCMTK storescu -> our service vs Orthanc vs DCMTK storescp.

Everything (the peers, our service, the senders) runs inside one private network
namespace on 127.0.0.1; the script re-executes itself under ``unshare -n`` first.

    .venv/bin/python benchmarks/ingest.py            # full run (300x512^2 + 2000x64^2)
    .venv/bin/python benchmarks/ingest.py --quick    # smoke run

See benchmarks/README.md for what each figure means. The last line printed is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sample_data.generate import write_ct_series  # noqa: E402
from tests.support.peers import (  # noqa: E402
    DEFAULT_PDU,
    LOOPBACK,
    Orthanc,
    PeerError,
    StoreSCP,
    dcmtk_tool,
    ensure_private_netns,
    free_port,
    peer_env,
    spawn_storescu,
    start_process,
    stop_process,
    wait_for_http,
    write_as_stored_profile,
)

CALLING_AET = "BENCHSCU"
OUR_AET = "DICOMSERVICE"
CENTRE = "BENCH-CENTRE"
PATIENT_ID = "BENCH-0001"
ISSUER = "HOSP-A"
TARGETS = ("ours", "orthanc", "storescp")
MODES = ("single", "parallel")
SERIES_SEED_OFFSET = {"ct512": 0, "ct64": 1}
# series -> (rows and columns, instances); QUICK_SIZES for smoke runs
SIZES = {"ct512": (512, 300), "ct64": (64, 2000)}
QUICK_SIZES = {"ct512": (512, 20), "ct64": (64, 100)}


@dataclass(frozen=True)
class Series:
    name: str
    files: list[Path]
    size: int
    profile: tuple[Path, str]

    @property
    def n(self) -> int:
        return len(self.files)

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


@dataclass
class Endpoint:
    port: int
    aet: str
    pid: int
    verify: Callable[[int], None]
    stop: Callable[[], None]
    log_path: Path


@dataclass
class RunResult:
    seconds: float
    server_cpu_s: float | None


@dataclass
class Measurement:
    runs: list[RunResult] = field(default_factory=list)
    warmup: list[RunResult] = field(default_factory=list)
    error: str | None = None

    def as_dict(self, n: int, nbytes: int) -> dict[str, Any]:
        if not self.runs:
            return {"error": self.error}
        secs = [r.seconds for r in self.runs]
        ips = [n / s for s in secs]
        cpu = [r.server_cpu_s for r in self.runs if r.server_cpu_s is not None]
        return {
            "median_ips": round(statistics.median(ips), 1),
            "best_ips": round(max(ips), 1),
            "runs_ips": [round(x, 1) for x in ips],
            "runs_s": [round(s, 3) for s in secs],
            "warmup_s": [round(r.seconds, 3) for r in self.warmup],
            "median_mb_s": round(nbytes / statistics.median(secs) / 1e6, 1),
            "server_cpu_s_per_100": (
                round(100 * statistics.median(cpu) / n, 3) if len(cpu) == len(secs) else None
            ),
            "error": self.error,
        }


# ---------------------------------------------------------------------------
# targets: each start_*() brings up a fresh, empty receiver and returns an Endpoint


def _proc_cpu_seconds(pid: int) -> float | None:
    """utime+stime (+ reaped children) of ``pid`` in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def start_storescp(workdir: Path) -> Endpoint:
    scp = StoreSCP(workdir=workdir, pdu=DEFAULT_PDU, fork=True)
    scp.start()
    assert scp.proc is not None

    def verify(n: int) -> None:
        got = scp.count_files()
        if got != n:
            raise PeerError(f"storescp wrote {got} files, expected {n}")

    return Endpoint(scp.port, scp.aet, scp.proc.pid, verify, scp.stop, scp.log_path)


def start_orthanc(workdir: Path) -> Endpoint:
    server = Orthanc(workdir=workdir, max_pdu=DEFAULT_PDU)
    server.start()
    assert server.proc is not None

    def verify(n: int) -> None:
        got = server.count_instances()
        if got != n:
            raise PeerError(f"Orthanc holds {got} instances, expected {n}")

    return Endpoint(
        server.dicom_port, server.aet, server.proc.pid, verify, server.stop, server.log_path
    )


def service_command(override: str | None) -> list[str]:
    if override:
        return shlex.split(override)
    script = Path(sys.executable).parent / "dicom-service"
    if script.exists():
        return [str(script)]
    found = shutil.which("dicom-service")
    if found:
        return [found]
    return [
        sys.executable,
        "-c",
        "import sys; from dicom_service.cli import main; sys.exit(main())",
    ]


def service_build(cmd: list[str]) -> tuple[str | None, str | None]:
    """Which build ``cmd`` runs (its ``--version`` line: version and package
    directory) and None; or None and why ``cmd`` is not usable.

    Run, as every command of our service here, from a directory of its own:
    ``python -m dicom_service.cli`` puts the working directory first on
    ``sys.path``, so from a checkout it would load that checkout's package
    whatever ``PYTHONPATH`` names.
    """
    with tempfile.TemporaryDirectory(prefix="service-build-") as neutral:
        try:
            res = subprocess.run([*cmd, "--version"], capture_output=True, text=True,
                                 timeout=60, env=peer_env(), cwd=neutral)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{shlex.join(cmd)} --version: {exc}"
    if res.returncode != 0:
        return None, (f"{shlex.join(cmd)} --version exited {res.returncode}: "
                      f"{res.stderr.strip()[-500:]}")
    return res.stdout.strip(), None


def start_ours(workdir: Path, cmd: list[str]) -> Endpoint:
    data = workdir / "data"
    data.mkdir(parents=True)
    log = workdir / "service.log"

    def cli(*args: str) -> str:
        res = subprocess.run(  # in workdir: see service_build
            [*cmd, *args], capture_output=True, text=True, timeout=120, env=peer_env(),
            cwd=workdir,
        )
        with log.open("a") as fh:
            fh.write(f"$ {shlex.join(args)}\n{res.stdout}{res.stderr}\n")
        if res.returncode != 0:
            raise PeerError(f"dicom-service {shlex.join(args)} failed: {res.stderr.strip()[-800:]}")
        return res.stdout

    d = ("--data-dir", str(data))
    cli("centres", "add", CENTRE, *d)
    cli("peers", "add", "--ae-title", CALLING_AET, "--centre", CENTRE, "--host", LOOPBACK, *d)
    cli("enrol", "--centre", CENTRE, "--patient-id", PATIENT_ID, "--issuer", ISSUER, *d)
    dicom_port, http_port = free_port(), free_port()
    while http_port == dicom_port:
        http_port = free_port()
    proc = start_process(
        [
            *cmd,
            "serve",
            *d,
            "--ae-title",
            OUR_AET,
            "--dicom-port",
            str(dicom_port),
            "--http-port",
            str(http_port),
        ],
        log_path=log,
        env=peer_env({"PYTHONUNBUFFERED": "1"}),
        cwd=workdir,
    )
    try:
        wait_for_http(f"http://{LOOPBACK}:{http_port}/health", timeout=120, proc=proc, log_path=log)
    except BaseException:
        stop_process(proc, timeout=20)
        raise

    def verify(n: int) -> None:
        # storescu already exits non-zero on any failed C-STORE. The CLI contract gives
        # no instance count; if the store layout used by tests/support/service.py is
        # there, count the stored files too.
        if proc.poll() is not None:
            raise PeerError(f"dicom-service serve exited with {proc.returncode} during the run")
        store = data / "store" / "instances"
        if store.is_dir():
            got = sum(1 for _ in store.rglob("*.dcm"))
            if got != n:
                raise PeerError(f"dicom-service stored {got} files, expected {n}")

    def stop() -> None:
        stop_process(proc, timeout=30)

    return Endpoint(dicom_port, OUR_AET, proc.pid, verify, stop, log)


# ---------------------------------------------------------------------------
# one measured send


def chunks(files: Sequence[Path], parts: int) -> list[list[Path]]:
    """``parts`` contiguous, near-equal slices (a quarter of the series each for 4)."""
    k, r = divmod(len(files), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + k + (1 if i < r else 0)
        out.append(list(files[start:end]))
        start = end
    return [c for c in out if c]


def quiesce_disk() -> None:
    """Flush every dirty page and commit the file system's journal (``sync``)
    before a timed run. Otherwise a run pays for what came before it: the
    previous receiver's files, deleted after its run (on a file system mounted
    with ``discard``, their blocks are trimmed when the next journal commit,
    i.e. the next receiver's first fsync, frees them), storescp's unflushed
    writes, and the new receiver's own start-up writes."""
    os.sync()


def flush_latency_ms(directory: Path, rounds: int = 50) -> dict[str, float]:
    """What a durable write costs on this disk, as the receivers pay it (median
    ms): ``fsync`` of a new 512 KiB file, and of the directory after a rename
    into it (ours pays both per instance, plus a SQLite commit)."""
    work = Path(tempfile.mkdtemp(prefix="flush-", dir=directory))
    data = os.urandom(512 * 1024)
    files, dirs = [], []
    try:
        for i in range(rounds):
            tmp, final = work / f"{i}.tmp", work / f"{i}.dcm"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                t0 = time.perf_counter()
                os.fsync(fd)
                files.append(time.perf_counter() - t0)
            finally:
                os.close(fd)
            os.rename(tmp, final)
            dfd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
            try:
                t0 = time.perf_counter()
                os.fsync(dfd)
                dirs.append(time.perf_counter() - t0)
            finally:
                os.close(dfd)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.sync()
    return {"file_512k_fsync_ms": round(statistics.median(files) * 1000, 3),
            "directory_fsync_ms": round(statistics.median(dirs) * 1000, 3)}


def send(series: Series, ep: Endpoint, parallel: int, timeout: float) -> RunResult:
    groups = chunks(series.files, parallel)
    quiesce_disk()
    cpu0 = _proc_cpu_seconds(ep.pid)
    t0 = time.perf_counter()
    procs = [
        spawn_storescu(g, LOOPBACK, ep.port, ep.aet, CALLING_AET, profile=series.profile)
        for g in groups
    ]
    errors: list[str] = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                # storescu's exit status is the high byte of the failing C-STORE status
                tail = err.decode(errors="replace")[-800:].strip()
                errors.append(
                    f"storescu exit {proc.returncode} (status 0x{proc.returncode:02X}xx)"
                    + (f": {tail}" if tail else "")
                )
        elapsed = time.perf_counter() - t0
    finally:
        for proc in procs:
            stop_process(proc, timeout=5)
    cpu1 = _proc_cpu_seconds(ep.pid)
    if errors:
        raise PeerError("; ".join(errors) + f"\nreceiver log tail:\n{_tail(ep.log_path)}")
    ep.verify(series.n)
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return RunResult(elapsed, cpu)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def one_run(
    target: str,
    series: Series,
    parallel: int,
    root: Path,
    service_cmd: list[str],
    timeout: float,
    keep: bool = False,
) -> RunResult:
    workdir = Path(tempfile.mkdtemp(prefix=f"{target}-", dir=root))
    ep: Endpoint | None = None
    try:
        if target == "storescp":
            ep = start_storescp(workdir)
        elif target == "orthanc":
            ep = start_orthanc(workdir)
        else:
            ep = start_ours(workdir, service_cmd)
        return send(series, ep, parallel, timeout)
    finally:
        if ep is not None:
            ep.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=peer_env())
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if a.get("median_ips") and b.get("median_ips"):
        return round(float(a["median_ips"]) / float(b["median_ips"]), 3)
    return None


def paired_ratio(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """a's rate over b's within each round (the targets of one round run one
    after the other, so a drift of the machine between rounds cancels out), and
    their median; ``None`` unless both have every round."""
    xs, ys = a.get("runs_ips") or [], b.get("runs_ips") or []
    if not xs or len(xs) != len(ys) or not all(ys):
        return None
    rounds = [round(x / y, 3) for x, y in zip(xs, ys, strict=True)]
    return {"rounds": rounds, "median": round(statistics.median(rounds), 3)}


def make_series(root: Path, name: str, *, quick: bool, seed: int) -> Series:
    """The synthetic series ``name`` (seeded, one patient), written under
    ``root``, with the storescu profile that sends it as stored."""
    size, n = (QUICK_SIZES if quick else SIZES)[name]
    files = sorted(
        write_ct_series(
            root / name,
            n=n,
            size=size,
            seed=seed + SERIES_SEED_OFFSET[name],
            patient_id=PATIENT_ID,
            issuer=ISSUER,
        )
    )
    return Series(name, files, size, write_as_stored_profile(files, root / f"{name}.cfg"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small series, 1 repetition (smoke run)")
    p.add_argument("--repeat", type=int, default=None, help="measured runs per figure (default 3)")
    p.add_argument("--no-warmup", action="store_true", help="skip the unmeasured warm-up run")
    p.add_argument("--parallel", type=int, default=4, help="storescu processes in parallel mode")
    p.add_argument(
        "--targets", default=",".join(TARGETS), help="comma list of: ours,orthanc,storescp"
    )
    p.add_argument("--series", default="ct512,ct64", help="comma list of: ct512,ct64")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir")
    p.add_argument(
        "--keep", action="store_true", help="keep the temp dir (series, receiver dirs, logs)"
    )
    p.add_argument(
        "--service-cmd", default=None, help="command for our CLI (default: dicom-service)"
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="per storescu process, seconds")
    p.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1 or args.parallel < 1:
        p.error("--repeat and --parallel must be >= 1")
    args.targets = [t for t in args.targets.split(",") if t]
    args.series = [s for s in args.series.split(",") if s]
    for t in args.targets:
        if t not in TARGETS:
            p.error(f"unknown target {t!r}")
    for s in args.series:
        if s not in ("ct512", "ct64"):
            p.error(f"unknown series {s!r}")
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_private_netns()

    generator = "sample_data.generate.write_ct_series"
    service_cmd = service_command(args.service_cmd)
    root = Path(tempfile.mkdtemp(prefix="ingest-bench-", dir=args.workdir))
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "quick": args.quick,
        "repeat": args.repeat,
        "warmup": not args.no_warmup,
        "parallel": args.parallel,
        "statistic": "median of repeats (best also given)",
        "unit": "instances/s",
        "env": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "dcmtk": tool_version([dcmtk_tool("storescu"), "--version"]),
            "orthanc": tool_version(["/usr/sbin/Orthanc", "--version"]),
            "generator": generator,
            "storescu": f"-pdu {DEFAULT_PDU}, TCP_NODELAY=1, transfer syntax as stored",
            "orthanc_config": f"SyncStorageArea=true, MaximumPduLength={DEFAULT_PDU}, "
            "DicomThreadsCount=4, StorageCompression=false, fresh storage per run",
            "storescp_config": f"+xa -pm --fork -pdu {DEFAULT_PDU}, no fsync, "
            "fresh directory per run",
            "ours_config": f"fresh --data-dir per run; serve --ae-title {OUR_AET}",
        },
        "series": {},
        "results": {},
        "ratios": {},
        "paired_ratios": {},
        "ips": {},
        "errors": {},
    }
    try:
        result["env"]["disk"] = flush_latency_ms(root)
        log(f"disk: {result['env']['disk']}")
        targets = list(args.targets)
        if "ours" in targets:
            build, why = service_build(service_cmd)
            result["env"]["ours_build"] = build
            log(f"ours: {build}")
            if why:
                log(f"[ours] skipped: {why}")
                result["errors"]["ours"] = why
                targets.remove("ours")

        all_series: list[Series] = []
        for name in args.series:
            t0 = time.perf_counter()
            s = make_series(root, name, quick=args.quick, seed=args.seed)
            all_series.append(s)
            result["series"][name] = {
                "instances": s.n,
                "rows_cols": s.size,
                "bytes": s.total_bytes,
                "seed": args.seed + SERIES_SEED_OFFSET[name],
            }
            log(
                f"generated {name}: {s.n} x {s.size}^2, {s.total_bytes / 1e6:.1f} MB "
                f"in {time.perf_counter() - t0:.1f}s ({generator})"
            )

        for s in all_series:
            result["results"][s.name] = {}
            result["ratios"][s.name] = {}
            result["paired_ratios"][s.name] = {}
            for mode in MODES:
                par = 1 if mode == "single" else args.parallel
                meas = {t: Measurement() for t in targets}
                rounds = ([] if args.no_warmup else ["warmup"]) + ["run"] * args.repeat
                # interleave targets within each round so drift hits all alike
                for kind in rounds:
                    for t in targets:
                        m = meas[t]
                        if m.error:
                            continue
                        try:
                            r = one_run(t, s, par, root, service_cmd, args.timeout, args.keep)
                        except (PeerError, OSError, subprocess.SubprocessError) as exc:
                            m.error = f"{type(exc).__name__}: {exc}"[:4000]
                            log(f"[{s.name} {mode} {t}] FAILED: {m.error}")
                            continue
                        (m.warmup if kind == "warmup" else m.runs).append(r)
                        log(
                            f"[{s.name} {mode} x{par} {t}] {kind}: {r.seconds:.2f}s "
                            f"= {s.n / r.seconds:.1f} inst/s"
                        )
                res = {t: meas[t].as_dict(s.n, s.total_bytes) for t in targets}
                result["results"][s.name][mode] = res
                for t, d in res.items():
                    result["ips"][f"{s.name}.{mode}.{t}"] = d.get("median_ips")
                    if d.get("error"):
                        result["errors"][f"{s.name}.{mode}.{t}"] = d["error"]
                ours = res.get("ours", {})
                result["ratios"][s.name][mode] = {
                    "ours/orthanc": ratio(ours, res.get("orthanc", {})),
                    "ours/storescp": ratio(ours, res.get("storescp", {})),
                    "orthanc/storescp": ratio(res.get("orthanc", {}), res.get("storescp", {})),
                }
                result["paired_ratios"][s.name][mode] = {
                    "ours/orthanc": paired_ratio(ours, res.get("orthanc", {})),
                    "ours/storescp": paired_ratio(ours, res.get("storescp", {})),
                }
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print_table(result)
    line = json.dumps(result, sort_keys=False)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    print(line, flush=True)
    return 1 if any(k != "ours" for k in result["errors"]) else 0


def print_table(result: dict[str, Any]) -> None:
    print(f"ingest benchmark: median of {result['repeat']} (instances/s; best in brackets)")
    for sname, modes in result["results"].items():
        info = result["series"][sname]
        for mode, res in modes.items():
            par = 1 if mode == "single" else result["parallel"]
            cells = []
            for t, d in res.items():
                if d.get("median_ips") is None:
                    cells.append(f"{t}=ERROR")
                else:
                    cells.append(f"{t}={d['median_ips']:.1f} [{d['best_ips']:.1f}]")
            ratios = ", ".join(
                f"{k}={v:.2f}" for k, v in result["ratios"][sname][mode].items() if v is not None
            )
            paired = result["paired_ratios"][sname][mode]["ours/orthanc"]
            if paired is not None:
                ratios += (f"; ours/orthanc round by round {paired['median']:.2f} "
                           f"[{min(paired['rounds']):.2f}-{max(paired['rounds']):.2f}]")
            print(
                f"  {sname} ({info['instances']}x{info['rows_cols']}^2) {mode} x{par}: "
                f"{'  '.join(cells)}" + (f"  | {ratios}" if ratios else "")
            )


if __name__ == "__main__":
    sys.exit(main())
