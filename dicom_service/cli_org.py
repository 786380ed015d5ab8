"""``dicom-service networks|areas|roles|prefs|groups`` and ``centres join``:
bootstrap the organisation from the command line.

The operator at the command line holds the data directory and so every right
(``by=None`` in :mod:`dicom_service.care.organisation`); every change is
audited with the actor ``cli``. Networks, centres, people and groups are
named; areas by their code.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from dicom_service.care.access import ROLES
from dicom_service.config import Settings

if TYPE_CHECKING:
    from dicom_service.app import Services
    from dicom_service.care.organisation import OrganisationService


def _services(args: argparse.Namespace) -> Services:
    # imported here, like cli._services: nothing may import prometheus_client
    # before serve points it at its multi-process directory
    from dicom_service.app import build_services

    return build_services(Settings.from_env(data_dir=getattr(args, "data_dir", None)))


def _org(args: argparse.Namespace) -> OrganisationService:
    from dicom_service.care.organisation import OrganisationService

    return OrganisationService(_services(args).db)


def cmd_networks_add(args: argparse.Namespace) -> int:
    network_id = _org(args).add_network(args.name, by=None)
    print(f"{network_id}\t{args.name}")
    return 0


def cmd_networks_list(args: argparse.Namespace) -> int:
    for n in _org(args).list_networks():
        print(f"{n.id}\t{n.name}")
    return 0


def cmd_areas_add(args: argparse.Namespace) -> int:
    org = _org(args)
    area_id = org.add_area(org.network_id(args.network), args.code, args.name, by=None)
    print(f"{area_id}\t{args.code}")
    return 0


def cmd_areas_list(args: argparse.Namespace) -> int:
    org = _org(args)
    for a in org.list_areas(org.network_id(args.network)):
        print(f"{a.id}\t{a.code}\t{a.name}")
    return 0


def cmd_centres_join(args: argparse.Namespace) -> int:
    services = _services(args)
    from dicom_service.care.organisation import OrganisationService

    org = OrganisationService(services.db)
    org.join_network(services.care.centre_id(args.centre), org.network_id(args.network),
                     by=None)
    print(f"{args.centre} joined {args.network}")
    return 0


def cmd_roles_grant(args: argparse.Namespace) -> int:
    org = _org(args)
    expires = org.grant_role(org.user_id(args.user), org.network_id(args.network), args.role,
                             valid_days=args.valid_days, by=None)
    print(f"{args.role} granted; " + (f"expires {expires:%Y-%m-%d}" if expires else
                                      "does not expire"))
    return 0


def cmd_roles_extend(args: argparse.Namespace) -> int:
    org = _org(args)
    expires = org.extend_role(org.user_id(args.user), org.network_id(args.network), args.role,
                              days=args.days, by=None)
    print(f"{args.role} extended; expires {expires:%Y-%m-%d}")
    return 0


def cmd_roles_revoke(args: argparse.Namespace) -> int:
    org = _org(args)
    org.revoke_role(org.user_id(args.user), org.network_id(args.network), args.role, by=None)
    print(f"{args.role} revoked")
    return 0


def cmd_roles_list(args: argparse.Namespace) -> int:
    org = _org(args)
    for r in org.list_roles(org.network_id(args.network), by=None):
        expiry = f"expires {r.expires_at:%Y-%m-%d}" if r.expires_at else "does not expire"
        print(f"{r.username}\t{r.role}\t{expiry}")
    return 0


def cmd_prefs_set(args: argparse.Namespace) -> int:
    org = _org(args)
    network_id = org.network_id(args.network) if args.network else None
    areas = org.set_preferences(org.user_id(args.user), org.area_ids(args.area, network_id),
                                by=None)
    print(" ".join(a.code for a in areas))
    return 0


def cmd_prefs_show(args: argparse.Namespace) -> int:
    org = _org(args)
    for a in org.preferences(org.user_id(args.user)):
        print(f"{a.network_id}\t{a.code}\t{a.name}")
    return 0


def cmd_groups_add(args: argparse.Namespace) -> int:
    org = _org(args)
    network_id = org.network_id(args.network)
    area_id = org.area_ids([args.area], network_id)[0] if args.area else None
    group_id = org.add_group(network_id, args.name, area_id, by=None)
    print(f"{group_id}\t{args.name}")
    return 0


def cmd_groups_add_member(args: argparse.Namespace) -> int:
    org = _org(args)
    group_id = org.group_id(org.network_id(args.network), args.group)
    org.add_group_member(group_id, org.user_id(args.user), by=None)
    print(f"{args.user} added to {args.group}")
    return 0


def cmd_groups_list(args: argparse.Namespace) -> int:
    org = _org(args)
    for g in org.list_groups(org.network_id(args.network), by=None):
        print(f"{g.id}\t{g.name}\t{len(g.member_ids)} members")
    return 0


def _subcommands(sub: Any, name: str, help_text: str) -> Any:
    """The sub-command group ``name``, created or (``centres``) reused."""
    existing = sub.choices.get(name)
    if existing is not None:
        for action in existing._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
    return sub.add_parser(name, help=help_text).add_subparsers(dest="sub", required=True)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``networks``, ``areas``, ``centres join``, ``roles``, ``prefs`` and ``groups``."""
    networks = _subcommands(sub, "networks", "reference networks")
    n_add = networks.add_parser("add", parents=[common], help="add a network")
    n_add.add_argument("name")
    n_add.set_defaults(func=cmd_networks_add)
    networks.add_parser("list", parents=[common]).set_defaults(func=cmd_networks_list)

    areas = _subcommands(sub, "areas", "thematic areas of a network")
    a_add = areas.add_parser("add", parents=[common], help="add a thematic area")
    a_add.add_argument("--network", required=True)
    a_add.add_argument("--code", required=True, help='e.g. "VASCA-WG"')
    a_add.add_argument("--name", required=True)
    a_add.set_defaults(func=cmd_areas_add)
    a_list = areas.add_parser("list", parents=[common])
    a_list.add_argument("--network", required=True)
    a_list.set_defaults(func=cmd_areas_list)

    centres = _subcommands(sub, "centres", "hospitals")
    join = centres.add_parser("join", parents=[common], help="a centre joins a network")
    join.add_argument("--centre", required=True)
    join.add_argument("--network", required=True)
    join.set_defaults(func=cmd_centres_join)

    roles = _subcommands(sub, "roles", "people's roles per network")
    for name, func, help_text in (
            ("grant", cmd_roles_grant, "grant a role (a guest's expires after 90 days)"),
            ("extend", cmd_roles_extend, "extend an expiring role (a guest's)"),
            ("revoke", cmd_roles_revoke, "revoke a role")):
        p = roles.add_parser(name, parents=[common], help=help_text)
        p.add_argument("--user", required=True, help="username")
        p.add_argument("--network", required=True)
        p.add_argument("--role", required=True, choices=ROLES)
        if name == "grant":
            p.add_argument("--valid-days", type=int, default=None)
        if name == "extend":
            p.add_argument("--days", type=int, default=90)
        p.set_defaults(func=func)
    r_list = roles.add_parser("list", parents=[common], help="a network's roles")
    r_list.add_argument("--network", required=True)
    r_list.set_defaults(func=cmd_roles_list)

    prefs = _subcommands(sub, "prefs", "a person's thematic areas")
    p_set = prefs.add_parser("set", parents=[common], help="replace a person's thematic areas")
    p_set.add_argument("--user", required=True, help="username")
    p_set.add_argument("--area", nargs="+", required=True, help="area codes")
    p_set.add_argument("--network", default=None,
                       help="the areas' network (needed when a code is in several)")
    p_set.set_defaults(func=cmd_prefs_set)
    p_show = prefs.add_parser("show", parents=[common])
    p_show.add_argument("--user", required=True)
    p_show.set_defaults(func=cmd_prefs_show)

    groups = _subcommands(sub, "groups", "expert groups")
    g_add = groups.add_parser("add", parents=[common], help="add an expert group")
    g_add.add_argument("--network", required=True)
    g_add.add_argument("--name", required=True)
    g_add.add_argument("--area", default=None, help="the group's thematic area code")
    g_add.set_defaults(func=cmd_groups_add)
    g_member = groups.add_parser("add-member", parents=[common], help="add a person")
    g_member.add_argument("--network", required=True)
    g_member.add_argument("--group", required=True)
    g_member.add_argument("--user", required=True, help="username")
    g_member.set_defaults(func=cmd_groups_add_member)
    g_list = groups.add_parser("list", parents=[common])
    g_list.add_argument("--network", required=True)
    g_list.set_defaults(func=cmd_groups_list)
