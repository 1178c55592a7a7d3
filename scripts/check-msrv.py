#!/usr/bin/env python3
"""Checks that Cargo.toml's `rust-version` is what the crate needs.

The machine has one toolchain, so the minimum is derived rather than
built: the library's own code needs LIBRARY_FLOOR (let-chains; edition
2024 alone needs 1.85), and each dependency states its own minimum
(`rust-version` in its manifest, as `cargo metadata` reports it). For the
default build and for each feature alone, the minimum is the highest of
those over the normal dependencies that build pulls in (`cargo tree -e
normal`, which, unlike `cargo metadata`, leaves out the features the
dev-dependencies turn on).

Fails when `rust-version` is not the default build's minimum, or when a
feature needs more and the README's "Requirements" does not say so (as
"`FEATURE` needs Rust X.Y"). Prints the table either way.
"""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Let-chains (`if let ... && let ...`), stable since 1.88.
LIBRARY_FLOOR = (1, 88)


def version(text):
    return tuple(int(part) for part in text.split("."))[:2]


def show(v):
    return f"{v[0]}.{v[1]}"


def minimums():
    """Every package's stated minimum, by `name version`."""
    out = subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--all-features"],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    return {
        f"{p['name']} {p['version']}": version(p["rust_version"])
        for p in json.loads(out)["packages"]
        if p.get("rust_version")
    }


def needs(stated, features):
    """The highest minimum over the build's normal dependencies, and whose."""
    args = ["cargo", "tree", "-e", "normal", "--prefix", "none", "-f", "{p}"]
    if features:
        args += ["--features", features]
    out = subprocess.check_output(args, cwd=ROOT, text=True, stderr=subprocess.DEVNULL)
    best, who = LIBRARY_FLOOR, "goctx's own code (let-chains)"
    for line in set(out.splitlines()):
        name, ver = line.split()[:2]
        key = f"{name} {ver.lstrip('v')}"
        if name != "goctx" and stated.get(key, (0, 0)) > best:
            best, who = stated[key], key
    return best, who


def main():
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    declared = version(manifest["package"]["rust-version"])
    features = sorted(f for f in manifest["features"] if f != "default")
    readme = (ROOT / "README.md").read_text()
    stated = minimums()
    problems = []
    default, who = needs(stated, None)
    print(f"{'build':<16} needs  because of")
    print(f"{'default':<16} {show(default):<6} {who}")
    if declared != default:
        problems.append(
            f"rust-version is {show(declared)}, the default build needs {show(default)} ({who})"
        )
    for feature in features:
        need, who = needs(stated, feature)
        print(f"{feature:<16} {show(need):<6} {who}")
        if need > declared:
            said = re.search(rf"`{re.escape(feature)}` needs Rust {re.escape(show(need))}\b", readme)
            if not said:
                problems.append(
                    f"feature {feature} needs Rust {show(need)} ({who}); "
                    f"the README's Requirements must say \"`{feature}` needs Rust {show(need)}\""
                )
    for problem in problems:
        print(f"check-msrv: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
