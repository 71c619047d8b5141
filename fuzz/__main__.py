"""``make fuzz``: every decoder a remote party reaches, fed generated inputs.

    python -m fuzz [--count N] [--seed S] [--only wire,letters,bundles,receipts,web]

Each target gets ``--count`` inputs (default 1,000,000) from a seeded generator
(``generate.py``): valid messages of its schema, the same with hostile parts, random
values, damaged bytes. The rule: a decoder either returns something that holds every
check (finite numbers, sizes and names within bounds), or raises its typed error; any
other exception, or a bad value let through, is a finding, printed with the seed and
input number that make it again. Where a decoded item is stored (letters), it is stored,
in a real SQLite store, and no write may fail. Exit status 1 if anything was found.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from .targets import TARGETS, Findings

logger = logging.getLogger("fuzz")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--only", default=",".join(TARGETS), help="targets, comma-separated")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("p2pchat").setLevel(logging.CRITICAL)  # refusals are logged: expected
    found = 0
    for name in args.only.split(","):
        target = TARGETS[name]
        findings = Findings(name, args.seed)
        started = time.perf_counter()
        accepted = target(args.seed, args.count, findings)
        took = time.perf_counter() - started
        print(
            f"{name:>9}: {args.count:,} inputs in {took:.0f} s, {accepted:,} accepted, "
            f"{findings.rejected:,} refused with a typed error, {len(findings.items)} findings"
        )
        for line in findings.items[:20]:
            print(f"           {line}")
        found += len(findings.items)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
