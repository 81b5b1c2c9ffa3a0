"""Fail when an install step downgraded or removed a package that was there before it.

Usage: python .ci/no_downgrade.py BEFORE.json  (BEFORE.json: `pip list --format=json` taken
before the step; the current environment is read now).
"""

from __future__ import annotations

import json
import subprocess
import sys

from packaging.version import InvalidVersion, Version


def installed() -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {p["name"].lower(): p["version"] for p in json.loads(out)}


def main(before_file: str) -> int:
    with open(before_file) as f:
        before = {p["name"].lower(): p["version"] for p in json.load(f)}
    after = installed()
    problems = []
    for name, old in sorted(before.items()):
        new = after.get(name)
        if new is None:
            problems.append(f"{name} {old} was removed")
            continue
        try:
            if Version(new) < Version(old):
                problems.append(f"{name} was downgraded {old} -> {new}")
        except InvalidVersion:
            if new != old:
                problems.append(f"{name} changed {old} -> {new} (versions not comparable)")
    if problems:
        print(
            "the install step changed packages the environment already had:",
            *problems,
            sep="\n  ",
            file=sys.stderr,
        )
        return 1
    print(f"no downgrade: {len(before)} packages checked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
