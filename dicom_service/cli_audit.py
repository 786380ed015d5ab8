"""``dicom-service audit``: check and export the hash-chained audit log.

``audit verify`` walks the chain (:func:`dicom_service.care.audit.verify`):
exit 0 with a one-line summary that ends with the head (note it elsewhere
now and then), or exit 1 with ``audit chain broken at row N: what`` and one
line per further break. It needs the server secret (from ``--data-dir`` or
the environment), as the chain is keyed with it.

``audit export [--since ISO] [--until ISO]`` prints JSON lines: one object
per row, in id order, with every field including ``row_hash``; ``since`` is
inclusive, ``until`` exclusive, times without an offset are UTC.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dicom_service.config import Settings

if TYPE_CHECKING:
    from dicom_service.app import Services

_MORE = 20  # further breaks listed after the first


def _services(args: argparse.Namespace) -> Services:
    # imported here, like cli._services: nothing may import prometheus_client
    # before serve points it at its multi-process directory
    from dicom_service.app import build_services

    return build_services(Settings.from_env(data_dir=getattr(args, "data_dir", None)))


def _when(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an ISO 8601 date or date and time") from None


def cmd_verify(args: argparse.Namespace) -> int:
    from dicom_service.care import audit

    services = _services(args)
    try:
        with services.db.engine.connect() as conn:
            result = audit.verify(conn, audit.chain_for(services.db))
    finally:
        services.close()
    print(result.summary())
    for problem in result.problems[1:_MORE + 1]:
        print(f"  also {problem}")
    if len(result.problems) > _MORE + 1:
        print(f"  ... and {len(result.problems) - _MORE - 1} more")
    return 0 if result.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    from dicom_service.care import audit

    services = _services(args)
    try:
        with services.db.engine.connect() as conn:
            for row in audit.export(conn, since=args.since, until=args.until):
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        services.close()
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``audit verify|export`` to the ``dicom-service`` parser."""
    group = sub.add_parser("audit", help="the hash-chained audit log").add_subparsers(
        dest="sub", required=True)
    verify = group.add_parser("verify", parents=[common],
                              help="check the chain; exit 1 naming the first broken row")
    verify.set_defaults(func=cmd_verify)
    export = group.add_parser("export", parents=[common],
                              help="print the log as JSON lines, one row per line")
    export.add_argument("--since", type=_when, default=None, help="from this time (inclusive)")
    export.add_argument("--until", type=_when, default=None, help="to this time (exclusive)")
    export.set_defaults(func=cmd_export)
