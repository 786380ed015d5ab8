"""A/B of two builds of our service on the ingest path, alternated round by round.

Whether a change to the ingest path is faster cannot be read off two runs of
``ingest.py``: on this 2-vCPU machine two runs of the same build are up to
20-30% apart (where the scheduler puts storescu and the listener, what the
disk is doing). This script sends the same series with DCMTK ``storescu``
(as ``ingest.py`` sends it) to a fresh receiver of build A and one of build B
in every round, A first in one round and B first in the next (ABBA), after an
unmeasured warm-up round, and reports each build's rates and the quotient
A/B within each round with its median: drift between rounds cancels out, and
the spread of the quotients says how much a difference is worth.

    .venv/bin/python benchmarks/ingest_ab.py \\
        --a "env PYTHONPATH=/tmp/a .venv/bin/python -m dicom_service.cli" \\
        --b "env PYTHONPATH=/tmp/b .venv/bin/python -m dicom_service.cli" --rounds 30

Each build's commands run in a directory of their own, never in the caller's
working directory (``python -m`` would load the package found there first,
e.g. this checkout's, whatever ``PYTHONPATH`` says). Before the first round
the script asks each command for ``--version`` (version and the directory its
package is loaded from), prints both and puts them in its JSON; two commands
that load the same directory are refused unless ``--same-code`` says that is
meant (the same code under two settings, or its spread against itself).

Runs inside a private network namespace (re-executes itself under ``unshare
-n`` as ``ingest.py`` does). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.ingest import (  # noqa: E402
    SIZES,
    make_series,
    paired_ratio,
    service_build,
    start_ours,
)
from benchmarks.ingest import send as send_series  # noqa: E402
from tests.support.peers import ensure_private_netns  # noqa: E402


def order(round_number: int) -> tuple[str, str]:
    """Which build runs first in a round: A in odd rounds, B in even ones
    (round 0 is the warm-up), so that neither always follows the other."""
    return ("a", "b") if round_number % 2 else ("b", "a")


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test: how likely so uneven a split of rounds (or a more
    uneven one) is when neither build is faster (each round a coin toss)."""
    n = wins + losses
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def summary(rates: dict[str, list[float]]) -> dict[str, Any]:
    """Each build's median and runs (instances/s), the round-by-round A/B, and
    in how many rounds A was faster, with the sign test's p (rounds with equal
    rates left out)."""
    out: dict[str, Any] = {
        k: {"median_ips": round(statistics.median(v), 1), "runs_ips": [round(x, 1) for x in v]}
        for k, v in rates.items()}
    out["a/b"] = paired_ratio(out["a"], out["b"])
    pairs = list(zip(rates["a"], rates["b"], strict=True))
    wins = sum(a > b for a, b in pairs)
    losses = sum(a < b for a, b in pairs)
    out["a_faster"] = {"rounds": wins, "of": len(pairs),
                       "sign_test_p": round(sign_test(wins, losses), 4)}
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--a", required=True, help="command of build A's CLI")
    p.add_argument("--b", required=True, help="command of build B's CLI")
    p.add_argument("--rounds", type=int, default=10, help="measured rounds (default 10)")
    p.add_argument("--series", choices=sorted(SIZES), default="ct512")
    p.add_argument("--parallel", type=int, default=1,
                   help="storescu processes (associations) at once (default 1)")
    p.add_argument("--quick", action="store_true", help="a small series (smoke run)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir")
    p.add_argument("--timeout", type=float, default=1800.0, help="per storescu process, seconds")
    p.add_argument("--same-code", action="store_true",
                   help="A and B may load the same package directory")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.parallel < 1:
        p.error("--rounds and --parallel must be >= 1")
    return args


def builds(commands: dict[str, list[str]], same_code: bool) -> dict[str, str]:
    """Each command's ``--version`` line; SystemExit if one is not usable,
    or if both load the same package directory and ``same_code`` is not set."""
    found: dict[str, str] = {}
    for name, cmd in commands.items():
        build, why = service_build(cmd)
        if build is None:
            raise SystemExit(f"build {name.upper()}: {why}")
        found[name] = build
    if found["a"] == found["b"] and not same_code:
        raise SystemExit(f"A and B both run {found['a']!r}: nothing to compare "
                         "(--same-code if that is meant)")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_private_netns()
    commands = {"a": shlex.split(args.a), "b": shlex.split(args.b)}
    versions = builds(commands, args.same_code)
    for name, build in versions.items():
        print(f"{name.upper()}: {build}", file=sys.stderr, flush=True)
    root = Path(tempfile.mkdtemp(prefix="ingest-ab-", dir=args.workdir))
    try:
        series = make_series(root, args.series, quick=args.quick, seed=args.seed)
        rates: dict[str, list[float]] = {"a": [], "b": []}
        for round_number in range(args.rounds + 1):
            for build in order(round_number):
                workdir = Path(tempfile.mkdtemp(prefix=f"{build}-", dir=root))
                endpoint = start_ours(workdir, commands[build])
                try:
                    run = send_series(series, endpoint, args.parallel, args.timeout)
                finally:
                    endpoint.stop()
                shutil.rmtree(workdir)
                if round_number:
                    rates[build].append(series.n / run.seconds)
            if round_number:
                print(f"round {round_number}: a {rates['a'][-1]:.1f}, b {rates['b'][-1]:.1f}"
                      " instances/s", file=sys.stderr, flush=True)
        result = {"benchmark": "ingest_ab", "series": args.series, "instances": series.n,
                  "parallel": args.parallel, "rounds": args.rounds, "a_cmd": args.a,
                  "b_cmd": args.b, "a_build": versions["a"], "b_build": versions["b"],
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  **summary(rates)}
        faster = result["a_faster"]
        print(f"A/B median {result['a/b']['median']}; A faster in {faster['rounds']} of "
              f"{faster['of']} rounds (sign test p = {faster['sign_test_p']})",
              file=sys.stderr, flush=True)
        print(json.dumps(result))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
