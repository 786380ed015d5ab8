"""Real DICOM peers (Orthanc, DCMTK storescp/storescu/echoscu) on loopback, for tests
and benchmarks.

Orthanc and storescp cannot be told which address to listen on; they bind every
interface. They must therefore only ever run inside a private network namespace
whose only interface is ``lo``: call :func:`ensure_private_netns` at the top of a
script (it re-executes the script under ``unshare -n``), or run pytest as::

    unshare -n sh -c 'ip link set lo up && .venv/bin/pytest tests/test_peers.py'

Every process started here is stopped by its PID (SIGTERM, then SIGKILL after a
timeout). Every client helper refuses non-loopback hosts, and HTTP requests never
go through a proxy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
NETNS_ENV = "DICOM_SERVICE_NETNS"
DEFAULT_PDU = 131072
ORTHANC_BIN = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

UNCOMPRESSED_TS = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
)
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


class PeerError(RuntimeError):
    """A peer failed to start or answered unexpectedly."""


# ---------------------------------------------------------------------------
# network namespace


def running_in_private_netns() -> bool:
    """True when the only network interface of this process's namespace is ``lo`` and
    loopback works (i.e. ``lo`` is up).

    That is the property that matters: nothing started here can reach, or be
    reached from, anything but this namespace. (``/sys/class/net`` is not used: it
    shows the namespace sysfs was mounted in, not the current one.)
    """
    try:
        interfaces = {name for _, name in socket.if_nameindex()}
    except OSError:
        return False
    if interfaces != {"lo"}:
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind((LOOPBACK, 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=1.0):
                return True
    except OSError:
        return False


def ensure_private_netns(argv: Sequence[str] | None = None) -> None:
    """Re-execute the current command inside a fresh private network namespace.

    No-op when already inside one. ``NETNS_ENV`` guards against re-exec loops: if it is
    set but the namespace still has other interfaces, this raises instead of looping.
    ``argv`` defaults to the original interpreter command line (``sys.orig_argv``,
    so ``python -m pkg.mod`` works too).
    """
    if running_in_private_netns():
        return
    if os.environ.get(NETNS_ENV):
        raise PeerError(
            f"{NETNS_ENV} is set but this process is not in a private network namespace "
            f"(interfaces: {sorted(n for _, n in socket.if_nameindex())}); refusing to start peers"
        )
    unshare = shutil.which("unshare")
    if unshare is None:
        raise PeerError("unshare(1) not found; cannot create a private network namespace")
    ip = shutil.which("ip") or "/usr/sbin/ip"
    if argv is None:
        argv = [sys.executable, *sys.orig_argv[1:]]
    # unprivileged: also create a user namespace (mapped to root) to be allowed -n
    flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
    os.environ[NETNS_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(
        unshare,
        [unshare, *flags, "sh", "-c", f'{ip} link set lo up && exec "$@"', "sh", *argv],
    )


def require_private_netns() -> None:
    """Raise unless inside a private network namespace (see module docstring)."""
    if not running_in_private_netns():
        raise PeerError(
            "DICOM peers must run in a private network namespace; run under "
            "\"unshare -n sh -c 'ip link set lo up && exec ...'\""
        )


def _check_loopback(host: str) -> None:
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing to talk to non-loopback host {host!r}")


# ---------------------------------------------------------------------------
# processes, ports, environment


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def peer_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for child processes: ``TCP_NODELAY=1``, no HTTP proxy settings."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["TCP_NODELAY"] = "1"
    if extra:
        env.update(extra)
    return env


def dcmtk_tool(name: str) -> str:
    """Absolute path of a DCMTK binary.

    pynetdicom installs Python apps called ``storescu``/``storescp``/``echoscu`` into the
    venv's ``bin``; skip anything that is a script so the C++ DCMTK tool is used.
    ``DCMTK_BIN_DIR`` overrides the search.
    """
    override = os.environ.get("DCMTK_BIN_DIR")
    dirs = [override] if override else [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]
    for directory in dirs:
        if not directory:
            continue
        candidate = Path(directory) / name
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        with candidate.open("rb") as fh:
            if fh.read(2) == b"#!":
                continue
        return str(candidate)
    raise PeerError(f"DCMTK tool {name!r} not found (is the dcmtk package installed?)")


def start_process(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session with stdout+stderr appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else peer_env(),
            cwd=cwd,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int | None:
    """Stop ``proc`` by its PID: SIGTERM, wait ``timeout``, then SIGKILL.

    The process was started in its own session (process group id == its PID); any
    children it forked (e.g. ``storescp --fork``) get the same treatment through that
    group, which contains only processes descended from it.
    """
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    _stop_group(proc.pid, timeout)
    return proc.returncode


def _live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (Linux ``/proc``)."""
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def _stop_group(pgid: int, timeout: float) -> None:
    """Stop what is left of a process group we created (e.g. ``storescp --fork``
    children). Zombies waiting for init to reap them are ignored."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        if not _live_group_members(pgid):
            return
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _live_group_members(pgid):
            time.sleep(0.05)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


# ---------------------------------------------------------------------------
# HTTP on loopback, never through a proxy

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET a loopback URL; returns (status, body). Refuses non-loopback hosts."""
    host = urllib.parse.urlsplit(url).hostname or ""
    _check_loopback(host)
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_for_http(
    url: str,
    *,
    timeout: float = 60.0,
    proc: subprocess.Popen[Any] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            log = _tail(log_path) if log_path else ""
            raise PeerError(f"process exited with {proc.returncode} before {url} answered\n{log}")
        try:
            status, _ = http_get(url, timeout=2.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    log = _tail(log_path) if log_path else ""
    raise PeerError(f"{url} not ready after {timeout}s ({last})\n{log}")


# ---------------------------------------------------------------------------
# DCMTK clients


def _expand_inputs(inputs: Path | str | Iterable[Path | str]) -> list[Path]:
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    return [Path(p) for p in inputs]


def _iter_files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for root, _dirs, files in os.walk(path):
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield path


def stored_contexts(inputs: Path | str | Iterable[Path | str]) -> set[tuple[str, str]]:
    """(SOP Class UID, Transfer Syntax UID) pairs of the DICOM files in ``inputs``."""
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import read_file_meta_info

    pairs: set[tuple[str, str]] = set()
    for path in _iter_files(_expand_inputs(inputs)):
        try:
            meta = read_file_meta_info(path)
        except (InvalidDicomError, OSError, EOFError):
            continue
        sop = str(meta.get("MediaStorageSOPClassUID", "") or "")
        ts = str(meta.get("TransferSyntaxUID", "") or "")
        if sop and ts:
            pairs.add((sop, ts))
    return pairs


def write_as_stored_profile(
    inputs: Path | str | Iterable[Path | str], cfg_path: Path, profile: str = "AsStored"
) -> tuple[Path, str]:
    """Write a storescu association negotiation profile (``-xf cfg profile``) that
    proposes, for every SOP class found in ``inputs``, each transfer syntax the files
    are stored in (one presentation context each) plus an uncompressed fallback.

    Without it storescu proposes only uncompressed transfer syntaxes and fails on
    compressed files ("unable to convert dataset from 'RLE Lossless' ..."), and
    proposes nothing for SOP classes outside its built-in list.
    """
    pairs = stored_contexts(inputs)
    if not pairs:
        raise PeerError(f"no DICOM files found in {inputs!r}")
    ts_sections: dict[str, str] = {}

    def section(ts_list: tuple[str, ...]) -> str:
        key = "|".join(ts_list)
        if key not in ts_sections:
            ts_sections[key] = f"TS{len(ts_sections) + 1}"
        return ts_sections[key]

    contexts: list[str] = []
    for sop in sorted({sop for sop, _ in pairs}):
        stored = sorted(ts for s, ts in pairs if s == sop)
        for ts in stored:
            contexts.append(f"{sop}\\{section((ts,))}")
        if not set(stored) & set(UNCOMPRESSED_TS[:2]):
            contexts.append(f"{sop}\\{section(UNCOMPRESSED_TS[:2])}")
    if len(contexts) > 128:
        raise PeerError(f"{len(contexts)} presentation contexts needed; DICOM allows 128")
    lines = ["[[TransferSyntaxes]]"]
    for key, name in ts_sections.items():
        lines.append(f"[{name}]")
        lines += [f"TransferSyntax{i} = {ts}" for i, ts in enumerate(key.split("|"), 1)]
    lines += ["", "[[PresentationContexts]]", "[AsStoredContexts]"]
    lines += [f"PresentationContext{i} = {pc}" for i, pc in enumerate(contexts, 1)]
    lines += ["", "[[Profiles]]", f"[{profile}]", "PresentationContexts = AsStoredContexts", ""]
    cfg_path.write_text("\n".join(lines))
    return cfg_path, profile


def storescu_argv(
    inputs: Path | str | Iterable[Path | str],
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str,
    *,
    pdu: int = DEFAULT_PDU,
    profile: tuple[Path, str] | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """Command line for DCMTK storescu. Directories are scanned recursively
    (``+sd +r``). ``profile`` is what :func:`write_as_stored_profile` returns; ``None``
    keeps storescu's default proposals (uncompressed only)."""
    _check_loopback(host)
    paths = _expand_inputs(inputs)
    argv = [dcmtk_tool("storescu"), "-aet", calling_aet, "-aec", called_aet, "-pdu", str(pdu)]
    if any(p.is_dir() for p in paths):
        argv += ["+sd", "+r"]
    if profile is not None:
        argv += ["-xf", str(profile[0]), profile[1]]
    argv += [*extra, host, str(port), *map(str, paths)]
    return argv


def spawn_storescu(
    inputs: Path | str | Iterable[Path | str],
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str,
    *,
    pdu: int = DEFAULT_PDU,
    profile: tuple[Path, str] | None = None,
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start storescu without waiting (stdout/stderr piped); e.g. for parallel senders."""
    argv = storescu_argv(
        inputs, host, port, called_aet, calling_aet, pdu=pdu, profile=profile, extra=extra
    )
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=peer_env(),
        start_new_session=True,
    )


def storescu(
    files_or_dir: Path | str | Iterable[Path | str],
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str,
    *,
    pdu: int = DEFAULT_PDU,
    extra: Sequence[str] = (),
    as_stored: bool = True,
    timeout: float | None = 600.0,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Send files (or directories, recursively) with DCMTK storescu; env TCP_NODELAY=1.

    With ``as_stored`` (default) the files go over the wire in the transfer syntax
    they are stored in (see :func:`write_as_stored_profile`). storescu halts at the
    first failed C-STORE and then exits non-zero.
    """
    paths = _expand_inputs(files_or_dir)
    with tempfile.TemporaryDirectory(prefix="storescu-") as tmp:
        profile = write_as_stored_profile(paths, Path(tmp) / "as-stored.cfg") if as_stored else None
        argv = storescu_argv(
            paths, host, port, called_aet, calling_aet, pdu=pdu, profile=profile, extra=extra
        )
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=peer_env(),
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            stop_process(proc, timeout=5.0)
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result


def echoscu(
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str = "ECHOSCU",
    *,
    timeout: float = 10.0,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """C-ECHO with DCMTK echoscu; ``returncode == 0`` means the peer answered."""
    _check_loopback(host)
    argv = [
        dcmtk_tool("echoscu"),
        "-aet",
        calling_aet,
        "-aec",
        called_aet,
        "-to",
        str(max(1, int(timeout))),
        *extra,
        host,
        str(port),
    ]
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, env=peer_env(), timeout=timeout + 5, check=False
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, -1, str(exc.stdout or ""), "timeout")


def wait_for_echo(
    port: int,
    called_aet: str,
    *,
    host: str = LOOPBACK,
    timeout: float = 30.0,
    proc: subprocess.Popen[Any] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll with C-ECHO until the peer answers; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            log = _tail(log_path) if log_path else ""
            raise PeerError(f"process exited with {proc.returncode} before answering C-ECHO\n{log}")
        result = echoscu(host, port, called_aet, timeout=5.0)
        if result.returncode == 0:
            return
        last = (result.stderr or result.stdout).strip()
        time.sleep(0.1)
    log = _tail(log_path) if log_path else ""
    raise PeerError(f"no C-ECHO answer on {host}:{port} after {timeout}s ({last})\n{log}")


# ---------------------------------------------------------------------------
# peers


class _Peer:
    """Common start/stop plumbing: temp work dir, log file, stop by PID."""

    def __init__(self, workdir: Path | None, prefix: str) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=prefix)) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "peer.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def cleanup(self) -> None:
        """Stop, and remove the work directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class Orthanc(_Peer):
    """An Orthanc server with its own configuration in a temporary directory.

    Any calling AE may C-ECHO / C-STORE (``DicomAlwaysAllowStore``), the called AE is
    not checked, REST is unauthenticated on loopback. ``sync_storage`` maps to
    ``SyncStorageArea`` (Orthanc's default: fsync every file). ``dicomweb=True`` loads
    the Debian DICOMweb plugin (served under ``/dicom-web/``).
    """

    def __init__(
        self,
        *,
        aet: str = "ORTHANC",
        dicom_port: int | None = None,
        http_port: int | None = None,
        max_pdu: int = DEFAULT_PDU,
        dicom_threads: int = 4,
        sync_storage: bool = True,
        dicomweb: bool = False,
        plugins: Sequence[Path | str] = (),
        config_overrides: Mapping[str, Any] | None = None,
        workdir: Path | None = None,
        startup_timeout: float = 60.0,
        binary: str = ORTHANC_BIN,
    ) -> None:
        super().__init__(workdir, "orthanc-")
        self.aet = aet
        self.dicom_port = dicom_port or free_port()
        self.http_port = http_port or free_port()
        while self.http_port == self.dicom_port:
            self.http_port = free_port()
        self.url = f"http://{LOOPBACK}:{self.http_port}"
        self.storage_dir = self.workdir / "storage"
        self.config_path = self.workdir / "orthanc.json"
        self.startup_timeout = startup_timeout
        self.binary = binary
        plugin_list = [str(p) for p in plugins]
        if dicomweb:
            if not DICOMWEB_PLUGIN.exists():
                raise PeerError(f"DICOMweb plugin not found at {DICOMWEB_PLUGIN}")
            plugin_list.append(str(DICOMWEB_PLUGIN))
        self.config: dict[str, Any] = {
            "Name": f"test-{aet}",
            "StorageDirectory": str(self.storage_dir),
            "IndexDirectory": str(self.storage_dir),
            "TemporaryDirectory": str(self.workdir / "tmp"),
            "StorageCompression": False,
            "MaximumStorageSize": 0,
            "MaximumPatientCount": 0,
            "Plugins": plugin_list,
            "ConcurrentJobs": 2,
            "JobsHistorySize": 10,
            "SaveJobs": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "HttpThreadsCount": 8,
            "HttpDescribeErrors": True,
            "HttpCompressionEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "WebDavEnabled": False,
            "OrthancExplorerEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomModalities": {},
            "DicomModalitiesInDatabase": False,
            "OrthancPeers": {},
            "UnknownSopClassAccepted": True,
            "AcceptedTransferSyntaxes": ["1.2.840.10008.1.*"],
            "DicomThreadsCount": dicom_threads,
            "MaximumPduLength": max_pdu,
            "DicomScpTimeout": 30,
            "TcpNoDelay": True,
            "KeepAlive": True,
            "StableAge": 60,
            "OverwriteInstances": False,
            "SyncStorageArea": sync_storage,
            "MetricsEnabled": True,
            "DeidentifyLogs": True,
            "HttpProxy": "",
            "LuaScripts": [],
        }
        if config_overrides:
            self.config.update(config_overrides)

    def start(self) -> Self:
        require_private_netns()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.proc = start_process(
            [self.binary, "--no-jobs", str(self.config_path)],
            log_path=self.log_path,
            env=peer_env(),
            cwd=self.workdir,
        )
        wait_for_http(
            f"{self.url}/system",
            timeout=self.startup_timeout,
            proc=self.proc,
            log_path=self.log_path,
        )
        return self

    def get(self, path: str) -> bytes:
        """GET a REST path (e.g. ``/system``); raises unless HTTP 200."""
        status, body = http_get(f"{self.url}/{path.lstrip('/')}", timeout=30.0)
        if status != 200:
            raise PeerError(f"GET {path}: HTTP {status}: {body[:200]!r}")
        return body

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.get_json("/statistics")
        return stats

    def count_instances(self) -> int:
        return int(self.statistics()["CountInstances"])


class StoreSCP(_Peer):
    """DCMTK storescp writing what it receives into ``output_dir``.

    Accepts every transfer syntax DCMTK knows (``+xa``) and unknown SOP classes
    (``-pm``). ``fork=True`` serves each association in a child process (needed for
    several simultaneous associations; the default single-process storescp serves
    them one after the other). ``bit_preserving=True`` (``+B``) streams the dataset to
    disk without parsing it.
    """

    def __init__(
        self,
        *,
        aet: str = "STORESCP",
        port: int | None = None,
        output_dir: Path | None = None,
        pdu: int = DEFAULT_PDU,
        fork: bool = False,
        bit_preserving: bool = False,
        extra: Sequence[str] = (),
        workdir: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, "storescp-")
        self.aet = aet
        self.port = port or free_port()
        self.output_dir = Path(output_dir) if output_dir else self.workdir / "received"
        self.pdu = pdu
        self.fork = fork
        self.bit_preserving = bit_preserving
        self.extra = tuple(extra)
        self.startup_timeout = startup_timeout

    def argv(self) -> list[str]:
        argv = [
            dcmtk_tool("storescp"),
            "-aet",
            self.aet,
            "--output-directory",
            str(self.output_dir),
            "-pdu",
            str(self.pdu),
            "+xa",
            "-pm",
            "-dhl",
        ]
        if self.fork:
            argv.append("--fork")
        if self.bit_preserving:
            argv.append("+B")
        return [*argv, *self.extra, str(self.port)]

    def start(self) -> Self:
        require_private_netns()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.proc = start_process(self.argv(), log_path=self.log_path, env=peer_env())
        wait_for_echo(
            self.port,
            self.aet,
            timeout=self.startup_timeout,
            proc=self.proc,
            log_path=self.log_path,
        )
        return self

    def received_files(self) -> list[Path]:
        return sorted(p for p in self.output_dir.rglob("*") if p.is_file())

    def count_files(self) -> int:
        return len(self.received_files())


@contextmanager
def orthanc(**kwargs: Any) -> Iterator[Orthanc]:
    """``with orthanc(...) as o:`` -- same as ``with Orthanc(...) as o:``."""
    with Orthanc(**kwargs) as server:
        yield server


@contextmanager
def storescp(**kwargs: Any) -> Iterator[StoreSCP]:
    """``with storescp(...) as s:`` -- same as ``with StoreSCP(...) as s:``."""
    with StoreSCP(**kwargs) as server:
        yield server
