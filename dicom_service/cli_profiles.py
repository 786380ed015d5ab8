"""``dicom-service deid`` and ``dicom-service profiles ...``: tune and test
de-identification profiles from the command line.

* ``deid IN_DIR OUT_DIR --profile NAME [--key-file FILE]``: de-identify a
  folder offline (``offline.py``); exit status 1 when any input was refused.
* ``profiles list``: profiles on disk, which is active, the activation history.
* ``profiles show NAME``: one profile and its recipe texts.
* ``profiles validate FILE``: every error of a recipe (or of a
  ``profiles.toml`` and everything it names) as ``file:line: reason``; exit
  status 1 when there are errors.
* ``profiles activate NAME [--version V] [--sha256 H]``: make a profile the
  one new instances get (audited, actor ``cli``); running listeners pick it
  up within about a second.
* ``profiles leak-check NAME``: the profile over the synthetic sample set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dicom_service.config import Settings
from dicom_service.deidentify import ProfileError, RecipeError, load_profiles
from dicom_service.errors import ConfigError

if TYPE_CHECKING:
    from dicom_service.app import Services

# dicom_service.app (and through it prometheus_client) is imported inside the
# commands: ``serve`` configures the metrics directory before the first import.

ACTOR = "cli"


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=getattr(args, "data_dir", None))


def cmd_deid(args: argparse.Namespace) -> int:
    from dicom_service.app import _quiet_pydicom
    from dicom_service.offline import REPORT_NAME, deidentify_folder, load_key

    _quiet_pydicom()
    settings = _settings(args)
    profiles = load_profiles(settings.profiles_dir)
    try:
        profile = profiles.get(args.profile)
    except KeyError:
        raise ConfigError(f"no profile named {args.profile!r} "
                          f"(profiles: {', '.join(profiles.names())})") from None
    key, persistent = load_key(args.key_file)
    report = deidentify_folder(args.in_dir, args.out_dir, profile, key,
                               persistent_key=persistent)
    print(f"profile {profile.name} v{profile.version}: {report.count('written')} written, "
          f"{report.count('duplicate')} duplicate, {report.count('skipped')} skipped, "
          f"{report.refused} refused; report: {args.out_dir / REPORT_NAME}")
    if not persistent:
        print("no --key-file: pseudonyms and UIDs come from a random key and will differ "
              "on the next run", file=sys.stderr)
    return 1 if report.refused else 0


def _services(args: argparse.Namespace) -> Services:
    from dicom_service.app import build_services

    return build_services(_settings(args))


def cmd_profiles_list(args: argparse.Namespace) -> int:
    from dicom_service.profiles_admin.catalogue import snapshot

    services = _services(args)
    try:
        snap = snapshot(services.db, services.settings.profiles_dir)
    finally:
        services.close()
    if args.json:
        print(json.dumps(snap.to_json(), indent=1))
        return 0
    active = snap.active
    print(f"active: {active.name} v{active.version} sha256 {active.sha256[:16]} "
          f"(from {active.source})")
    for name in snap.profiles.names():
        p = snap.profiles.get(name)
        mark = "*" if active.matches(p) else " "
        options = ",".join(o.name for o in p.options) or "-"
        print(f"{mark} {p.name}\tv{p.version}\t{p.sha256}\toptions: {options}")
    if snap.history:
        print("activations (newest first):")
        for a in snap.history[:20]:
            print(f"  #{a.id}\t{a.activated_at.isoformat(timespec='seconds')}\t{a.actor}\t"
                  f"{a.name} v{a.version}\t{a.sha256[:16]}")
    return 0


def cmd_profiles_show(args: argparse.Namespace) -> int:
    from dicom_service.profiles_admin.catalogue import profile_json, recipe_texts, snapshot

    services = _services(args)
    try:
        snap = snapshot(services.db, services.settings.profiles_dir)
    finally:
        services.close()
    try:
        profile = snap.profiles.get(args.name)
    except KeyError:
        raise ConfigError(f"no profile named {args.name!r}") from None
    info = profile_json(profile, snap.active, snap.history)
    texts = recipe_texts(profile, services.settings.profiles_dir)
    if args.json:
        info["recipe_texts"] = texts
        print(json.dumps(info, indent=1))
        return 0
    print(f"{profile.name} v{profile.version}{'  (active)' if info['active'] else ''}")
    print(f"sha256 {profile.sha256}")
    if profile.description:
        print(profile.description)
    for o in profile.options:
        print(f"option {o.name} ({o.code} {o.meaning})")
    for recipe in texts:
        print(f"\n=== {recipe['file']} ===")
        print(recipe["text"].rstrip("\n"))
    return 0


def cmd_profiles_validate(args: argparse.Namespace) -> int:
    from dicom_service.profiles_admin.validation import validate_recipe_text

    path: Path = args.file
    if path.name == "profiles.toml":
        try:
            profiles = load_profiles(path.parent)
        except (ProfileError, RecipeError) as exc:
            print(exc)
            return 1
        print(f"ok: {len(profiles)} profiles load")
        return 0
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({type(exc).__name__})") from None
    problems = validate_recipe_text(text, path.name)
    for problem in sorted(problems, key=lambda p: p.line):
        print(f"{problem.file}:{problem.line}: {problem.reason}")
    if not problems:
        print(f"ok: {path.name}")
    return 1 if problems else 0


def cmd_profiles_activate(args: argparse.Namespace) -> int:
    from dicom_service.profiles_admin.activation import activate

    services = _services(args)
    try:
        record, profile = activate(services.db, services.settings.profiles_dir, args.name,
                                   version=args.version, sha256=args.sha256, actor=ACTOR)
    finally:
        services.close()
    print(f"activated {profile.name} v{profile.version} sha256 {profile.sha256} "
          f"(activation {record.id})")
    return 0


def cmd_profiles_leak_check(args: argparse.Namespace) -> int:
    from dicom_service.app import _quiet_pydicom
    from dicom_service.profiles_admin.leakcheck import leak_check

    _quiet_pydicom()
    profiles = load_profiles(_settings(args).profiles_dir)
    try:
        profile = profiles.get(args.name)
    except KeyError:
        raise ConfigError(f"no profile named {args.name!r}") from None
    report = leak_check(profile)
    if args.json:
        print(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    else:
        print(json.dumps(report.to_json()["summary"]))
        for item in report.planted:  # fake values from the generator: fine to print
            if item.survived:
                print(f"SURVIVED {item.kind}\t{item.value}\t"
                      f"{item.survived_files}/{item.files} files")
    return 1 if any(item.survived for item in report.planted) else 0


def add_commands(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                 common: argparse.ArgumentParser) -> None:
    """Register ``deid`` and ``profiles`` on the ``dicom-service`` parser."""
    deid = sub.add_parser("deid", help="de-identify a folder offline with a profile "
                                       "(exit 1 if any input was refused)")
    deid.add_argument("in_dir", type=Path, metavar="IN_DIR")
    deid.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    deid.add_argument("--profile", required=True, help="profile name from profiles.toml")
    deid.add_argument("--key-file", type=Path, default=None,
                      help="secret key (32+ random bytes; created, mode 0600, if missing) so "
                           "that repeated runs give the same pseudonyms and UIDs")
    deid.set_defaults(func=cmd_deid)

    profiles = sub.add_parser("profiles", help="de-identification profiles").add_subparsers(
        dest="sub", required=True)
    p_list = profiles.add_parser("list", parents=[common], help="profiles, active, history")
    p_list.add_argument("--json", action="store_true")
    p_list.set_defaults(func=cmd_profiles_list)
    p_show = profiles.add_parser("show", parents=[common], help="one profile and its recipes")
    p_show.add_argument("name")
    p_show.add_argument("--json", action="store_true")
    p_show.set_defaults(func=cmd_profiles_show)
    p_val = profiles.add_parser("validate", help="check a recipe file (or a profiles.toml)")
    p_val.add_argument("file", type=Path)
    p_val.set_defaults(func=cmd_profiles_validate)
    p_act = profiles.add_parser("activate", parents=[common],
                                help="make a profile the one new instances get (audited)")
    p_act.add_argument("name")
    p_act.add_argument("--version", default=None, help="refuse unless this is the version on disk")
    p_act.add_argument("--sha256", default=None, help="refuse unless the hash on disk starts so")
    p_act.set_defaults(func=cmd_profiles_activate)
    p_leak = profiles.add_parser("leak-check", help="run a profile over the synthetic sample "
                                                    "set; exit 1 if a planted value survives")
    p_leak.add_argument("name")
    p_leak.add_argument("--json", action="store_true")
    p_leak.set_defaults(func=cmd_profiles_leak_check)
