"""``dicom-service users``: accounts of the people who log in.

``users add USERNAME --display-name NAME [--centre NAME] [--admin]
[--password-stdin]`` reads the password from stdin, or generates one and
prints it once; ``users set-password USERNAME [--password-stdin]`` likewise.
``users list``, ``users unlock``, ``users disable``, ``users reset-totp``.
``users totp-enrol USERNAME`` prints the otpauth URI for an authenticator app
(it holds the secret: hand it only to the person); ``--code CODE`` then
confirms it and prints the one-time recovery codes. Every change is audited
with actor ``cli``; passwords and codes never reach a log.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dicom_service.config import Settings

if TYPE_CHECKING:
    from dicom_service.care.accounts import AccountService

ACTOR = "cli"


@contextmanager
def _accounts(args: argparse.Namespace) -> Iterator[AccountService]:
    # imported here, like cli._services: nothing may import prometheus_client
    # before serve points it at its multi-process directory
    from dicom_service.app import build_services
    from dicom_service.care.accounts import AccountService

    services = build_services(Settings.from_env(data_dir=getattr(args, "data_dir", None)))
    try:
        yield AccountService(services.db, services.settings.server_secret or b"")
    finally:
        services.close()


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated?): from stdin's first line, or a new random one."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    return secrets.token_urlsafe(18), True


def cmd_add(args: argparse.Namespace) -> int:
    password, generated = _password(args)
    with _accounts(args) as accounts:
        user_id = accounts.create_user(args.username, display_name=args.display_name,
                                       password=password, centre=args.centre,
                                       platform_admin=args.admin, actor=ACTOR)
    if generated:
        print(password)  # shown once; only the Argon2 hash is kept
    print(f"user {user_id} added", file=sys.stderr)
    return 0


def cmd_set_password(args: argparse.Namespace) -> int:
    password, generated = _password(args)
    with _accounts(args) as accounts:
        accounts.set_password(accounts.user_id(args.username), password, actor=ACTOR)
    if generated:
        print(password)
    print("password set", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        users = accounts.list_users()
    for u in users:
        flags = [name for name, on in (("admin", u.is_platform_admin), ("locked", u.locked),
                                       ("disabled", u.disabled), ("totp", u.totp_enrolled))
                 if on]
        print(f"{u.id}\t{u.username}\t{u.display_name}\t{u.centre or ''}\t{','.join(flags)}")
    return 0


def _change(action: Callable[[AccountService, int], None], done: str) -> Callable[
        [argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        with _accounts(args) as accounts:
            action(accounts, accounts.user_id(args.username))
        print(f"{args.username} {done}")
        return 0
    return command


def cmd_totp_enrol(args: argparse.Namespace) -> int:
    with _accounts(args) as accounts:
        user_id = accounts.user_id(args.username)
        if args.code is None:
            print(accounts.begin_totp_enrolment(user_id, actor=ACTOR).otpauth_uri)
            return 0
        from dicom_service.care.accounts import LoginRefused

        try:
            codes = accounts.confirm_totp(user_id, args.code, actor=ACTOR)
        except LoginRefused as exc:  # a wrong code counts towards the lock-out
            print(f"dicom-service: {exc}", file=sys.stderr)
            return 2
    print("second factor confirmed; recovery codes (each works once, shown only now):",
          file=sys.stderr)
    for code in codes:
        print(code)
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``users add|set-password|list|unlock|disable|reset-totp|totp-enrol``."""
    users = sub.add_parser("users", help="accounts of the people who log in").add_subparsers(
        dest="sub", required=True)
    add = users.add_parser("add", parents=[common],
                           help="add a person; prints a generated password once")
    add.add_argument("username")
    add.add_argument("--display-name", required=True)
    add.add_argument("--centre", default=None, help="the person's own hospital")
    add.add_argument("--admin", action="store_true", help="platform administrator")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin")
    add.set_defaults(func=cmd_add)
    password = users.add_parser("set-password", parents=[common],
                                help="set a new password; prints a generated one once")
    password.add_argument("username")
    password.add_argument("--password-stdin", action="store_true")
    password.set_defaults(func=cmd_set_password)
    users.add_parser("list", parents=[common], help="every account").set_defaults(func=cmd_list)
    for name, action, done, text in (
            ("unlock", lambda a, u: a.unlock(u, actor=ACTOR), "unlocked",
             "end a lock-out after failed logins"),
            ("disable", lambda a, u: a.disable(u, actor=ACTOR), "disabled",
             "stop the person logging in; ends their sessions"),
            ("reset-totp", lambda a, u: a.reset_totp(u, actor=ACTOR), "second factor reset",
             "forget the second factor; the next login enrols a new one")):
        parser = users.add_parser(name, parents=[common], help=text)
        parser.add_argument("username")
        parser.set_defaults(func=_change(action, done))
    enrol = users.add_parser("totp-enrol", parents=[common],
                             help="print the otpauth URI; with --code confirm it and print "
                                  "the recovery codes")
    enrol.add_argument("username")
    enrol.add_argument("--code", default=None, help="a current code of the authenticator")
    enrol.set_defaults(func=cmd_totp_enrol)
