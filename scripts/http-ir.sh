#!/usr/bin/env bash
# Instructions per request of a real HTTP server, with and without
# goctx::http::RequestContextLayer (issue 9): the trivial axum server of
# examples/http_load_server.rs runs under valgrind's callgrind, a client on
# loopback sends it N keep-alive requests (after 200 unmeasured ones), and
# the server's user-space instruction count for those N requests is divided
# by N. Deterministic, unlike wrk on a shared machine: the same binary gives
# the same count whatever else runs. It does not see the kernel (socket
# reads and writes), which a wall-clock load test does.
#
# Run by hand; nothing in .ci/run uses it. Needs valgrind and python3.
#
#   scripts/http-ir.sh [N]        (default N = 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet --example http_load_server
bin=${CARGO_TARGET_DIR:-target}/release/examples/http_load_server

cat >"$work/client.py" <<'PY'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
for attempt in range(100):  # the server under valgrind starts slowly
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/")
        r = c.getresponse(); r.read()
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("server did not answer")
for _ in range(n):
    c.request("GET", "/")
    r = c.getresponse()
    if r.status != 200 or r.read() != b"hello":
        sys.exit(f"unexpected answer: {r.status}")
PY

measure() {
    local mode=$1
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$mode.%p" "$bin" --layer "$mode" \
        >"$work/server.$mode.log" 2>"$work/valgrind.$mode.log" &
    local vg=$!
    for _ in $(seq 300); do grep -qs "listening on" "$work/server.$mode.log" && break; sleep 0.1; done
    local port
    port=$(grep -o "127.0.0.1:[0-9]*" "$work/server.$mode.log" | cut -d: -f2)
    python3 "$work/client.py" "$port" 200          # warm-up, not measured
    callgrind_control -z "$vg" >/dev/null 2>&1    # counters to zero
    python3 "$work/client.py" "$port" "$N"
    callgrind_control -d "$vg" >/dev/null 2>&1    # dump the N requests
    sleep 1
    kill -9 "$vg"; wait "$vg" 2>/dev/null || true
    local total
    total=$(grep -h "^totals:" "$work"/cg."$mode".*.1 | awk '{print $2}')
    echo "$total"
}

off=$(measure off)
on=$(measure on)
# The warm-up and the counting include one extra request each (the client's
# first, which checks the server is up); N+1 requests were counted.
python3 - "$off" "$on" "$N" <<'PY'
import sys
off, on, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) + 1
print(f"without the layer: {off / n:,.0f} Ir/request")
print(f"with the layer:    {on / n:,.0f} Ir/request")
print(f"the layer adds {(on - off) / n:,.0f} Ir/request ({(on - off) / off:+.1%} of the server's user-space instructions)")
PY
