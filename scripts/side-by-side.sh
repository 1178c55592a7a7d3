#!/usr/bin/env bash
# The shared side-by-side harness (../shared/tools/side-by-side: plain loops,
# goctx and tokio-util's CancellationToken in interleaved batches, medians of
# 7) with one row added beside its `child_create_drop`:
#
#   child_create_drop        goctx's drop cancels (RAII); tokio-util's plain
#                            drop only leaves the parent: different work.
#   child_create_drop_guard  the same goctx drop beside a tokio-util child
#                            held in a `drop_guard`, which cancels on drop:
#                            equal work.
#
# The shared tool is read-only; this copies it, adds the row, builds and runs.
#
# Usage: scripts/side-by-side.sh [RUNS]   RUNS defaults to 3. Prints
#        `row goctx_ns tokio_ns goctx/tokio` per row and run.
#        scripts/side-by-side.sh --summary FILE...   reads saved output and
#        prints, per row, the medians of goctx's and tokio-util's times over
#        all the runs, and the lowest and highest goctx/tokio ratio.
# The shared tools are looked for beside the repository (../shared/tools, as
# for the main checkout); from another clone, set SIDE_BY_SIDE to the
# harness's folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--summary" ]; then
    shift
    exec python3 - "$@" <<'PY'
import statistics, sys
rows = {}
for path in sys.argv[1:]:
    for line in open(path):
        parts = line.split()
        if len(parts) == 4 and not line.startswith("#") and parts[2] != "-":
            rows.setdefault(parts[0], []).append(tuple(map(float, parts[1:])))
print("| row | goctx (median) | tokio-util (median) | goctx / tokio-util, lowest–highest | runs |")
print("|---|---:|---:|---|---:|")
for row, runs in rows.items():
    goctx = statistics.median(r[0] for r in runs)
    tokio = statistics.median(r[1] for r in runs)
    ratios = [r[2] for r in runs]
    print(f"| {row} | {goctx:.2f} ns | {tokio:.2f} ns | {min(ratios):.3f}–{max(ratios):.3f} | {len(runs)} |")
PY
fi
tool=${SIDE_BY_SIDE:-$root/../shared/tools/side-by-side}
if [ ! -f "$tool/src/main.rs" ]; then
    echo "side-by-side.sh: no harness at $tool; set SIDE_BY_SIDE to the shared tools' side-by-side folder" >&2
    exit 2
fi
runs=${1:-3}
# One work folder per checkout, so that two clones do not build over each other.
work=${TMPDIR:-/tmp}/goctx-side-by-side-$(printf '%s' "$root" | cksum | cut -d' ' -f1)
mkdir -p "$work"
rm -rf "$work/src"
cp -r "$tool/src" "$work/"
chmod -R u+w "$work/src"
sed "s#GOCTX_PATH#$root#" "$tool/Cargo.toml" > "$work/Cargo.toml"
python3 - "$work/src/main.rs" <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
anchor = '    row(\n        "chain1000_cancel",'
if anchor not in src:
    sys.exit("side-by-side.sh: the shared harness changed; no chain1000_cancel row to add before")
extra = '''    row(
        "child_create_drop_guard",
        ab(
            1_000_000,
            7,
            |n| for _ in 0..n {
                black_box(goctx::with_cancel(&live));
            },
            |n| for _ in 0..n {
                black_box(tok.child_token().drop_guard());
            },
        ),
    );
'''
open(path, "w").write(src.replace(anchor, extra + anchor, 1))
PY
(cd "$work" && cargo build --release -q 2>/dev/null || cargo build --release)
for i in $(seq 1 "$runs"); do
    echo "# run $i"
    "$work/target/release/side-by-side"
done
