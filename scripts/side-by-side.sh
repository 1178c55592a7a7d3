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
# Usage: scripts/side-by-side.sh [RUNS]   (from the repository root; RUNS
# defaults to 3). Prints `row goctx_ns tokio_ns goctx/tokio` per row and run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tool=${SIDE_BY_SIDE:-$root/../shared/tools/side-by-side}
runs=${1:-3}
work=${TMPDIR:-/tmp}/goctx-side-by-side
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
