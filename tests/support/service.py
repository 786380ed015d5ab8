"""Run ``dicom-service serve`` as a real process on loopback, for tests.

The service's own log is kept in the data directory so that tests can scan it
for identifiers too.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.peers import free_port, start_process, stop_process, wait_for_http

AE_TITLE = "DICOM_SERVICE"


class ServiceProcess:
    def __init__(self, data_dir: Path, *, ae_title: str = AE_TITLE) -> None:
        self.data_dir = data_dir
        self.ae_title = ae_title
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.log_path = data_dir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    # -- administration through the real command line ----------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "dicom_service.cli", *args, "--data-dir", str(self.data_dir)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        with self.log_path.open("a") as log:  # admin output is scanned for leaks too
            log.write(result.stdout + result.stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({result.returncode}): {result.stderr}")
        return result

    def setup_peer(self, centre: str, ae_title: str, host: str | None = "127.0.0.1") -> None:
        self.cli("centres", "add", centre)
        extra = ["--host", host] if host else []
        self.cli("peers", "add", "--ae-title", ae_title, "--centre", centre, *extra)

    def enrol(self, centre: str, patient_id: str, issuer: str | None = None) -> str:
        extra = ["--issuer", issuer] if issuer else []
        return self.cli(
            "enrol", "--centre", centre, "--patient-id", patient_id, *extra
        ).stdout.strip()

    # -- the server ----------------------------------------------------------
    def start(self) -> Self:
        argv = [
            sys.executable,
            "-m",
            "dicom_service.cli",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--ae-title",
            self.ae_title,
            "--dicom-port",
            str(self.dicom_port),
            "--http-port",
            str(self.http_port),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = start_process(argv, log_path=self.log_path, env=env)
        wait_for_http(
            f"http://127.0.0.1:{self.http_port}/health",
            timeout=60,
            proc=self.proc,
            log_path=self.log_path,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL to every process of the server (serve and its listener
        processes, one process group): no clean-up of any kind runs."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.stop()

    # -- inspection ----------------------------------------------------------
    @property
    def store_root(self) -> Path:
        return self.data_dir / "store" / "instances"

    def stored_files(self) -> list[Path]:
        return sorted(self.store_root.rglob("*.dcm")) if self.store_root.exists() else []

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(self.data_dir / "index.sqlite3", timeout=30)
        try:
            return list(con.execute(sql, params))
        finally:
            con.close()

    def all_written_bytes(self) -> list[tuple[Path, bytes]]:
        """Every file the service wrote: store, database (+WAL), temp files, its log."""
        out = []
        for path in sorted(self.data_dir.rglob("*")):
            if path.is_file() and "demo-sample" not in path.parts:
                out.append((path, path.read_bytes()))
        return out
