#!/usr/bin/env bash
# Instructions and locked instructions (atomic read-modify-writes: a `lock`
# prefix, or `xchg` with memory) per tree of one tree_phases shape, counted
# by valgrind's callgrind as the difference of two tree counts, so that
# start-up cancels out. Locked instructions are found by matching
# callgrind's per-instruction profile against the binary's disassembly.
#
# Usage: scripts/locked-count.sh SHAPE   (fanout-goctx, fanout-tokio,
# chain-goctx, chain-tokio; see integration/examples/tree_phases.rs)
set -euo pipefail
shape=${1:-}
case "$shape" in
    fanout-goctx | fanout-tokio | chain-goctx | chain-tokio) ;;
    *)
        echo "usage: scripts/locked-count.sh SHAPE, one of fanout-goctx, fanout-tokio, chain-goctx, chain-tokio" >&2
        exit 2
        ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build -q -p integration --release --example tree_phases
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/tree_phases
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for n in 20 40; do
    if ! valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$out/$n.cg" \
        "$bin" "$shape" "$n" >"$out/$n.log" 2>&1; then
        cat "$out/$n.log" >&2
        exit 1
    fi
done
python3 - "$bin" "$out" "$shape" <<'PY'
import re, subprocess, sys
binary, out, shape = sys.argv[1], sys.argv[2], sys.argv[3]
locked = set()
dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary], capture_output=True, text=True).stdout
for line in dis.splitlines():
    m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
    if m and (m.group(2) == "lock" or (m.group(2).startswith("xchg") and "(" in m.group(3))):
        locked.add(int(m.group(1), 16))
name = binary.rsplit("/", 1)[-1]
def count(path):
    """(all instructions, locked instructions executed in the binary itself)"""
    total = locked_n = 0
    addr = 0; skip = False; ob = None; obs = {}
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("summary:"):
            total = int(line.split()[1])
        if line.startswith(("ob=", "cob=")):
            m = re.match(r"c?ob=\((\d+)\)(?:\s+(.*))?", line)
            if m.group(2) is not None: obs[m.group(1)] = m.group(2)
            if line.startswith("ob="): ob = obs[m.group(1)]
            continue
        if line.startswith("calls="):
            skip = True; continue
        if not line or line[0] not in "+-*0123456789": continue
        tok = line.split(); a = tok[0]
        if a.startswith("0x"): addr = int(a, 16)
        elif a.startswith("+"): addr += int(a[1:])
        elif a.startswith("-"): addr -= int(a[1:])
        if skip:
            skip = False; continue
        if ob and ob.endswith(name) and addr in locked:
            locked_n += int(tok[-1])
    return total, locked_n
(t20, l20), (t40, l40) = count(f"{out}/20.cg"), count(f"{out}/40.cg")
print(f"{shape}: per tree {(t40 - t20) / 20:,.0f} instructions, {(l40 - l20) / 20:,.0f} locked")
PY
