"""``dicom-service tokens``: DICOMweb bearer tokens bound to an enrolment.

``tokens issue --enrolment PSEUDONYM`` prints the token (shown once; only its
SHA-256 is kept) on stdout and its ID on stderr; ``tokens revoke --id N``;
``tokens list --enrolment PSEUDONYM``. Every change is audited.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from dicom_service.config import Settings

if TYPE_CHECKING:
    from dicom_service.care.tokens import TokenService

ACTOR = "cli"


def _tokens(args: argparse.Namespace) -> TokenService:
    # imported here, like cli._services: nothing may import prometheus_client
    # before serve points it at its multi-process directory
    from dicom_service.app import build_services
    from dicom_service.care.tokens import TokenService

    services = build_services(Settings.from_env(data_dir=getattr(args, "data_dir", None)))
    return TokenService(services.db)


def cmd_issue(args: argparse.Namespace) -> int:
    token_id, token = _tokens(args).issue(args.enrolment, actor=ACTOR, label=args.label,
                                          valid_days=args.valid_days)
    print(token)
    print(f"token {token_id} issued", file=sys.stderr)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    _tokens(args).revoke(args.id, actor=ACTOR)
    print(f"token {args.id} revoked")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for token_id, label, expires, revoked in _tokens(args).list(args.enrolment):
        state = "revoked" if revoked else f"expires {expires:%Y-%m-%d}" if expires else "active"
        print(f"{token_id}\t{state}\t{label or ''}")
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``tokens issue|revoke|list`` to the ``dicom-service`` parser."""
    tokens = sub.add_parser("tokens", help="DICOMweb bearer tokens").add_subparsers(
        dest="sub", required=True)
    issue = tokens.add_parser("issue", parents=[common],
                              help="issue a token for one enrolment; prints the token")
    issue.add_argument("--enrolment", required=True, help="the enrolment's pseudonym")
    issue.add_argument("--label", default=None)
    issue.add_argument("--valid-days", type=int, default=None)
    issue.set_defaults(func=cmd_issue)
    revoke = tokens.add_parser("revoke", parents=[common], help="revoke a token by its ID")
    revoke.add_argument("--id", type=int, required=True)
    revoke.set_defaults(func=cmd_revoke)
    listing = tokens.add_parser("list", parents=[common], help="an enrolment's tokens")
    listing.add_argument("--enrolment", required=True)
    listing.set_defaults(func=cmd_list)
