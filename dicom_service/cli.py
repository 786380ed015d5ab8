"""The ``dicom-service`` command.

Every command takes ``--data-dir`` (or ``DICOM_SERVICE_DATA_DIR``). Errors are
printed as one line naming the problem, with exit status 2; nothing
identifying is printed.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dicom_service
from dicom_service.config import Settings
from dicom_service.deidentify import ProfileError, RecipeError
from dicom_service.errors import ConfigError, Conflict, NotFound
from dicom_service.logsafe import describe

if TYPE_CHECKING:
    from dicom_service.app import Services

log = logging.getLogger("dicom_service")
ACTOR = "cli"


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data_dir", None), **extra)


def _services(args: argparse.Namespace, *, recover: bool = False, **extra: Any) -> Services:
    # imported here so that serve can point prometheus_client at a shared
    # multi-process directory before the library is first imported
    from dicom_service.app import build_services

    return build_services(_settings(args, **extra), recover=recover)


def _share_metrics(data_dir: Path, *, fresh: bool) -> None:
    """Metrics of every listener process of one ``serve`` in one place
    (prometheus_client's multi-process mode)."""
    directory = data_dir / "run" / "metrics"
    if fresh and directory.exists():
        for f in directory.iterdir():
            f.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


# -- serve ------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:

    _share_metrics(_settings(args).data_dir, fresh=True)
    from dicom_service.ingest.scp import DicomListener

    services = _services(args, recover=True, ae_title=args.ae_title,
                         dicom_port=args.dicom_port, http_port=args.http_port,
                         dicom_host=args.dicom_host, http_host=args.http_host)
    services.check_active_profile()  # an activation that no longer matches the disk
    settings = services.settings
    workers = args.dicom_workers if args.dicom_workers is not None else default_workers()
    if settings.dicom_port == 0:
        workers = 1  # an ephemeral port cannot be shared
    listener = DicomListener(settings, services.care, services.pipeline)
    listener.start()
    children = [_spawn_worker(args, settings, listener.fileno()) for _ in range(workers - 1)]
    # /health answers only once every listener process accepts associations:
    # a sender that connects right away is then spread over all of them
    for child in children:
        _wait_ready(child)
    http_socket = _http_socket(settings.http_host, settings.http_port,
                               reuse_port=bool(children))
    server = _http_server(services)
    log.info("DICOM listener %s on %s:%d; HTTP on http://%s:%d", settings.ae_title,
             settings.dicom_host, listener.port, settings.http_host, settings.http_port)
    if args.demo:
        from dicom_service.demo import load_demo

        def _demo() -> None:
            try:
                summary = load_demo(services, listener.port)
            except Exception as exc:  # demo loading must not take the service down
                log.error("demo data could not be loaded (%s)", describe(exc))
                return
            print(summary, flush=True)

        threading.Thread(target=_demo, name="demo-loader", daemon=True).start()

    def _stop(signum: int, _frame: Any) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.run(sockets=[http_socket])
    finally:
        for child in children:
            child.terminate()
        listener.stop()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        services.close()
    return 0


def _http_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening HTTP socket; with ``reuse_port`` every process of one serve
    binds the same port and the kernel spreads connections across them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _http_server(services: Services) -> Any:
    import uvicorn

    from dicom_service.web.app import create_app

    config = uvicorn.Config(create_app(services), log_level="warning", access_log=False,
                            lifespan="off")
    return uvicorn.Server(config)


def default_workers() -> int:
    """DICOM listener processes: one per core, at most four."""
    return max(1, min(os.cpu_count() or 1, 4))


def _package_dir() -> Path:
    """The directory of the ``dicom_service`` package this process runs."""
    return Path(dicom_service.__file__).resolve().parent


def worker_command(args: argparse.Namespace, settings: Settings,
                   dicom_fd: int) -> tuple[list[str], dict[str, str]]:
    """How a listener process is started: this interpreter, on the very
    package this process runs. ``-P``: not from the working directory, where
    ``-m`` would otherwise look first and could find another
    ``dicom_service``; and the directory this package came from first on
    ``PYTHONPATH``, unless it is a site directory (found there anyway; put
    first, its modules could shadow the standard library's)."""
    import site

    package_root = str(_package_dir().parent)
    site_dirs = {str(Path(d).resolve())
                 for d in [*site.getsitepackages(), site.getusersitepackages()]}
    argv = [sys.executable, "-P", "-m", "dicom_service.cli", "dicom-worker",
            "--data-dir", str(settings.data_dir), "--ae-title", settings.ae_title,
            "--dicom-host", settings.dicom_host, "--dicom-port", str(settings.dicom_port),
            "--dicom-fd", str(dicom_fd),
            "--http-host", settings.http_host, "--http-port", str(settings.http_port)]
    if args.verbose:
        argv.insert(argv.index("dicom-worker"), "--verbose")
    env = dict(os.environ)
    if package_root not in site_dirs:
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    return argv, env


def _spawn_worker(args: argparse.Namespace, settings: Settings,
                  dicom_fd: int) -> subprocess.Popen[bytes]:
    """A listener process accepting associations on serve's own DICOM socket."""
    argv, env = worker_command(args, settings, dicom_fd)
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            pass_fds=(dicom_fd,), env=env)


def _wait_ready(child: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Wait for a listener process's "ready" line; a process that fails is logged."""
    if child.stdout is None:  # pragma: no cover - _spawn_worker always pipes it
        return
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    line = child.stdout.readline() if ready else b""
    child.stdout.close()
    if line.strip() != b"ready":
        log.error("a DICOM listener process did not start (exit status %s)", child.poll())


def cmd_dicom_worker(args: argparse.Namespace) -> int:
    """An extra process of ``serve``: a DICOM listener on serve's own listening
    socket (inherited) and an HTTP server on the same port as ``serve``
    (SO_REUSEPORT), so that both protocols use every core."""
    from dicom_service.ingest.scp import DicomListener

    _die_with_parent()
    _share_metrics(_settings(args).data_dir, fresh=False)
    services = _services(args, ae_title=args.ae_title, dicom_port=args.dicom_port,
                         dicom_host=args.dicom_host)
    services.check_active_profile()
    listener = DicomListener(services.settings, services.care, services.pipeline)
    listener.start(inherited=socket.socket(fileno=args.dicom_fd))
    http_socket = _http_socket(args.http_host, args.http_port, reuse_port=True) \
        if args.http_port else None
    print("ready", flush=True)  # to serve, through the pipe it reads
    try:
        if http_socket is not None:
            _http_server(services).run(sockets=[http_socket])  # until SIGTERM
        else:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
    finally:
        listener.stop()
        services.close()
    return 0


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the parent ``serve`` dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not Linux
        pass
    if os.getppid() == 1:  # the parent is already gone
        os.kill(os.getpid(), signal.SIGTERM)


# -- administration -----------------------------------------------------------
def cmd_centres_add(args: argparse.Namespace) -> int:
    _services(args).care.add_centre(args.name, actor=ACTOR)
    print(args.name)
    return 0


def cmd_centres_list(args: argparse.Namespace) -> int:
    for name in _services(args).care.list_centres():
        print(name)
    return 0


def cmd_peers_add(args: argparse.Namespace) -> int:
    _services(args).care.add_peer(args.ae_title, args.centre, args.host, actor=ACTOR)
    print(args.ae_title)
    return 0


def cmd_peers_list(args: argparse.Namespace) -> int:
    for p in _services(args).care.list_peers():
        print(f"{p.ae_title}\t{p.centre}\t{p.host or '*'}")
    return 0


def cmd_peers_remove(args: argparse.Namespace) -> int:
    _services(args).care.remove_peer(args.ae_title, actor=ACTOR)
    return 0


def cmd_enrol(args: argparse.Namespace) -> int:
    pseudonym = _services(args).care.enrol(
        args.centre, args.patient_id, args.issuer, consent_registries=args.consent_registries,
        consent_research=args.consent_research, actor=ACTOR)
    print(pseudonym)
    return 0


def cmd_consent_withdraw(args: argparse.Namespace) -> int:
    removed = _services(args).care.withdraw_consent(args.pseudonym, actor=ACTOR)
    print(f"consent for care withdrawn; {removed} instances removed")
    return 0


def _data_dir_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="data directory (default: $DICOM_SERVICE_DATA_DIR or ./data)")
    return p


def _version() -> str:
    """``dicom-service VERSION from DIRECTORY`` (as ``pip --version``): which
    build a command runs, e.g. when two checkouts are compared."""
    return f"dicom-service {dicom_service.__version__} from {_package_dir()}"


def build_parser() -> argparse.ArgumentParser:
    common = _data_dir_parent()
    parser = argparse.ArgumentParser(prog="dicom-service", description=__doc__.splitlines()[0]
                                     if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--version", action="version", version=_version(),
                        help="print the version and where the package is loaded from")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the DICOM listener and web server")
    serve.add_argument("--ae-title", default=None)
    serve.add_argument("--dicom-host", default=None)
    serve.add_argument("--dicom-port", type=int, default=None)
    serve.add_argument("--http-host", default=None)
    serve.add_argument("--http-port", type=int, default=None)
    serve.add_argument("--dicom-workers", type=int, default=None,
                       help="DICOM listener processes sharing the port "
                            "(default: one per core, at most 4)")
    serve.add_argument("--demo", action="store_true",
                       help="seed a demo centre, peer and enrolments and load sample_data "
                            "through C-STORE")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("dicom-worker", parents=[common],
                            help="(internal) an extra listener process started by serve")
    worker.add_argument("--ae-title", required=True)
    worker.add_argument("--dicom-host", required=True)
    worker.add_argument("--dicom-port", type=int, required=True)
    worker.add_argument("--dicom-fd", type=int, required=True,
                        help="serve's listening DICOM socket, inherited")
    worker.add_argument("--http-host", required=True)
    worker.add_argument("--http-port", type=int, required=True)
    worker.set_defaults(func=cmd_dicom_worker)

    centres = sub.add_parser("centres", help="hospitals").add_subparsers(dest="sub", required=True)
    c_add = centres.add_parser("add", parents=[common])
    c_add.add_argument("name")
    c_add.set_defaults(func=cmd_centres_add)
    centres.add_parser("list", parents=[common]).set_defaults(func=cmd_centres_list)

    peers = sub.add_parser("peers", help="DICOM peers allowed to send").add_subparsers(
        dest="sub", required=True)
    p_add = peers.add_parser("add", parents=[common])
    p_add.add_argument("--ae-title", required=True)
    p_add.add_argument("--centre", required=True)
    p_add.add_argument("--host", default=None, help="accept this peer only from this address")
    p_add.set_defaults(func=cmd_peers_add)
    peers.add_parser("list", parents=[common]).set_defaults(func=cmd_peers_list)
    p_rm = peers.add_parser("remove", parents=[common])
    p_rm.add_argument("--ae-title", required=True)
    p_rm.set_defaults(func=cmd_peers_remove)

    enrol = sub.add_parser("enrol", parents=[common],
                           help="enrol a patient with consent for care; prints the pseudonym")
    enrol.add_argument("--centre", required=True)
    enrol.add_argument("--patient-id", required=True)
    enrol.add_argument("--issuer", default=None)
    enrol.add_argument("--consent-registries", action="store_true")
    enrol.add_argument("--consent-research", action="store_true")
    enrol.set_defaults(func=cmd_enrol)

    consent = sub.add_parser("consent", help="consent changes").add_subparsers(
        dest="sub", required=True)
    withdraw = consent.add_parser("withdraw", parents=[common],
                                  help="withdraw consent for care and erase the images")
    withdraw.add_argument("pseudonym")
    withdraw.set_defaults(func=cmd_consent_withdraw)

    from dicom_service import cli_tokens

    cli_tokens.add_commands(sub, common)

    from dicom_service import cli_org

    cli_org.add_commands(sub, common)

    from dicom_service import cli_users

    cli_users.add_commands(sub, common)

    from dicom_service import cli_profiles

    cli_profiles.add_commands(sub, common)

    from dicom_service import cli_audit

    cli_audit.add_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "openjpeg", "pylibjpeg", "pynetdicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, NotFound, Conflict, ValueError, ProfileError, RecipeError) as exc:
        print(f"dicom-service: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
