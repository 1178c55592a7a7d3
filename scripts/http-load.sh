#!/usr/bin/env bash
# Loopback load test of goctx::http::RequestContextLayer (issue 9): the
# same trivial axum server (examples/http_load_server.rs) with and without
# the layer, under wrk, in alternating runs (off, on, off, on, ...), then
# per-run requests/s and p50/p99 latency, their medians and the on/off
# ratios.
#
# Besides wrk's figures, each run reports the server's CPU time per request
# (user + system, from /proc, during the measured run only) and "server
# CPU", the share of the run the server was on its core. On a shared
# machine a busy neighbour takes wall-clock time from the server, which
# moves req/s and p99 by far more than 1 %; the CPU time per request and
# p50 (with 32 connections on a one-core server, about 32 service times;
# the server's pauses land in the tail) move much less, though a starved
# server still spends more CPU per request (less batching per wake-up).
# A run below ~95 % "server CPU" was disturbed.
#
# Run by hand; nothing in .ci/run uses it. Needs wrk (Debian: apt-get
# install wrk). Loopback only: the server binds 127.0.0.1.
#
# Settings (environment): ROUNDS (runs per mode, default 3), DURATION
# (wrk -d, default 10s), CONNECTIONS (wrk -c, default 32), WARMUP (wrk -d
# before each measured run, unmeasured, default 1s). With taskset and at
# least 2 CPUs, the server runs on CPU 0 and wrk on CPU 1.
#
#   scripts/http-load.sh | tee /tmp/http-load.txt
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-1s}

command -v wrk >/dev/null || { echo "wrk not found (apt-get install -y wrk)" >&2; exit 1; }

cargo build --quiet --release --features axum --example http_load_server
bin="${CARGO_TARGET_DIR:-target}/release/examples/http_load_server"

server_pin=() wrk_pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_pin=(taskset -c 0) wrk_pin=(taskset -c 1)
fi

tmp=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Starts the server with `--layer $1` and sets $server and $url.
start_server() {
  "${server_pin[@]}" "$bin" --layer "$1" >"$tmp/server.out" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    if grep -qs '^listening on ' "$tmp/server.out"; then
      url="http://$(sed -n 's/^listening on //p' "$tmp/server.out" | head -1)/"
      return
    fi
    sleep 0.05
  done
  echo "server did not start:" >&2; cat "$tmp/server.out" >&2; exit 1
}

stop_server() {
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=""
}

# The server's CPU time so far (user + system), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }
hz=$(getconf CLK_TCK)

# wrk's latency ("812.00us", "1.23ms", "1.01s") in microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); print v + 0 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000000 }
    else { print "NaN" } }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); wrk -t1 -c$CONNECTIONS -d$DURATION --latency, $ROUNDS rounds, warm-up $WARMUP"
echo "# pinning: server '${server_pin[*]:-none}', wrk '${wrk_pin[*]:-none}'"
row='%-5s %-5s %12s %10s %10s %12s %10s\n'
printf "$row" run layer 'req/s' 'p50 us' 'p99 us' 'CPU us/req' 'server CPU'

for f in off.rps on.rps off.p50 on.p50 off.p99 on.p99 off.cpu on.cpu; do : >"$tmp/$f"; done
run=0
for _ in $(seq "$ROUNDS"); do
  for mode in off on; do
    run=$((run + 1))
    start_server "$mode"
    "${wrk_pin[@]}" wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "$url" >/dev/null
    before=$(cpu_ticks)
    "${wrk_pin[@]}" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$tmp/wrk.out"
    after=$(cpu_ticks)
    stop_server
    if grep -q 'Non-2xx' "$tmp/wrk.out"; then
      echo "wrk saw failed requests in run $run:" >&2; cat "$tmp/wrk.out" >&2; exit 1
    fi
    # Timeouts (2 s) mean the server was starved of CPU: the run is kept
    # and flagged, since dropping it would bias the medians.
    if grep -q 'Socket errors' "$tmp/wrk.out"; then
      echo "# run $run, wrk: $(grep 'Socket errors' "$tmp/wrk.out" | sed 's/^ *//')"
    fi
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$tmp/wrk.out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$tmp/wrk.out")")
    # "1430394 requests in 10.00s, ...": the count and the wall time.
    read -r requests secs < <(awk '/ requests in / { sub(/s,$/, "", $4); print $1, $4 }' "$tmp/wrk.out")
    cpu_us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.3f", t / hz * 1e6 / n }')
    busy=$(awk -v t=$((after - before)) -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.0f%%", t / hz / s * 100 }')
    echo "$rps" >>"$tmp/$mode.rps"
    echo "$p50" >>"$tmp/$mode.p50"
    echo "$p99" >>"$tmp/$mode.p99"
    echo "$cpu_us" >>"$tmp/$mode.cpu"
    printf "$row" "$run" "$mode" "$rps" "$p50" "$p99" "$cpu_us" "$busy"
  done
done

off_rps=$(median <"$tmp/off.rps"); on_rps=$(median <"$tmp/on.rps")
off_p50=$(median <"$tmp/off.p50"); on_p50=$(median <"$tmp/on.p50")
off_p99=$(median <"$tmp/off.p99"); on_p99=$(median <"$tmp/on.p99")
off_cpu=$(median <"$tmp/off.cpu"); on_cpu=$(median <"$tmp/on.cpu")
echo
printf '%-12s %12s %10s %10s %12s\n' median 'req/s' 'p50 us' 'p99 us' 'CPU us/req'
printf '%-12s %12s %10s %10s %12s\n' 'layer off' "$off_rps" "$off_p50" "$off_p99" "$off_cpu"
printf '%-12s %12s %10s %10s %12s\n' 'layer on' "$on_rps" "$on_p50" "$on_p99" "$on_cpu"
awk -v a="$on_rps" -v b="$off_rps" -v c="$on_p99" -v d="$off_p99" -v e="$on_cpu" -v f="$off_cpu" \
    -v g="$on_p50" -v h="$off_p50" 'BEGIN {
  printf "%-12s %11.3fx %9.3fx %9.3fx %11.3fx\n", "on / off", a / b, g / h, c / d, e / f
  printf "throughput change with the layer (median req/s): %+.2f%%\n", (a / b - 1) * 100
  printf "server CPU per request with the layer: %+.3f us (%+.2f%%)\n", e - f, (e / f - 1) * 100 }'
for mode in off on; do
  awk -v m="$mode" '{ v[NR] = $1; if (NR == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 }
    END { printf "spread of req/s, layer %s: %.0f to %.0f (%.1f%% of the lowest)\n", m, lo, hi, (hi - lo) / lo * 100 }' \
    "$tmp/$mode.rps"
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
