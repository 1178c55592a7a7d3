#!/usr/bin/env python3
"""Prints markdown tables of the latest `cargo bench -p integration --bench context` run.

Usage: scripts/bench-table.py [--criterion DIR]... [--go GO_OUTPUT] [--all]

- The first table has the rows of issue 4: goctx, tokio-util and Go medians,
  the ratios, the target and whether goctx meets it.
- With --all, a second table lists every criterion group.
- Several --criterion directories (copies of target/criterion from separate
  runs) give one value per run in each cell, `run 1 / run 2`.

Times are criterion's median point estimates (goctx and tokio-util measured
in the same run). The Go column comes from the text output of
scripts/go-bench.sh (pass it with --go); without it the column says n/a.
"""

import argparse
import os
import sys

sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdata  # noqa: E402


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return "%.2f×" % (a / b)


def cells(values, fmt):
    """One table cell for several runs: `a / b / ...`."""
    return " / ".join(fmt(v) for v in values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion", action="append",
                        help="criterion output dir; repeat for several runs "
                             "(default <cargo target dir>/criterion)")
    parser.add_argument("--go", help="output of scripts/go-bench.sh")
    parser.add_argument("--all", action="store_true", help="also list every group")
    args = parser.parse_args()

    runs = [benchdata.load_criterion(d) for d in (args.criterion or [benchdata.default_criterion_dir()])]
    if not all(runs):
        sys.exit("no criterion results: run `cargo bench -p integration --bench context` first")
    go = benchdata.load_go(args.go)
    fmt = benchdata.fmt_ns

    def get(run, group, function):
        return run.get(group, {}).get(function)

    if len(runs) > 1:
        print("Each cell: run %s, in that order; ratios are within one run.\n"
              % " / ".join(str(i + 1) for i in range(len(runs))))
    print("| operation | criterion group | goctx | tokio-util | goctx / tokio-util "
          "| Go | goctx / Go | target | met? |")
    print("|---|---|---|---|---|---|---|---|---|")
    for group, label, target in benchdata.TARGETS:
        ours = [get(r, group, "goctx") for r in runs]
        theirs = [get(r, group, "tokio-util") for r in runs]
        gov = benchdata.go_value(go, group)
        known = [v for v in ours if v is not None]
        hits = sum(v <= target for v in known) if target is not None else 0
        if not known or target is None:
            met = "–"
        elif hits == len(known):
            met = "met"
        elif hits == 0:
            met = "**not met**"
        else:
            met = "met in %d of %d runs" % (hits, len(known))
        print("| %s | `%s` | %s | %s | %s | %s | %s | ≤ %s | %s |" % (
            label, group, cells(ours, fmt), cells(theirs, fmt),
            " / ".join(ratio(a, b) for a, b in zip(ours, theirs)), fmt(gov),
            " / ".join(ratio(a, gov) for a in ours),
            fmt(target) if target is not None else "–", met))

    if args.all:
        print()
        print("| criterion group | goctx | tokio-util | goctx / tokio-util | Go | goctx / Go |")
        print("|---|---|---|---|---|---|")
        groups = set().union(*runs)
        for group in sorted(groups, key=benchdata.sort_key):
            functions = set().union(*(r.get(group, {}) for r in runs))
            if "goctx" not in functions and "tokio-util" not in functions:
                # A reference row (e.g. the harness floor): its own label.
                for function in sorted(functions):
                    values = [get(r, group, function) for r in runs]
                    print("| `%s` (%s) | %s | | | | |" % (group, function, cells(values, fmt)))
                continue
            ours = [get(r, group, "goctx") for r in runs]
            theirs = [get(r, group, "tokio-util") for r in runs]
            gov = benchdata.go_value(go, group)
            print("| `%s` | %s | %s | %s | %s | %s |" % (
                group, cells(ours, fmt), cells(theirs, fmt),
                " / ".join(ratio(a, b) for a, b in zip(ours, theirs)), fmt(gov),
                " / ".join(ratio(a, gov) for a in ours)))


if __name__ == "__main__":
    main()
