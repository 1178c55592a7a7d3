#!/usr/bin/env bash
# Valgrind memcheck of examples/leakcheck.rs, a small program that uses
# every public API of goctx (see docs/RELIABILITY.md).
#
# Passes when valgrind finds no memory error and the leak summary reports
#     definitely lost: 0 bytes
#     indirectly lost: 0 bytes
# (or "All heap blocks were freed"). "Still reachable" and "possibly lost"
# blocks are reported but allowed: goctx's helper threads (the timer thread
# and idle callback threads) live until the process exits by design, and
# glibc's per-thread blocks of threads still running at exit are counted as
# "possibly lost". They are listed in the log for inspection.
#
# Usage: scripts/valgrind.sh            (debug build)
#        PROFILE=release scripts/valgrind.sh
# The full valgrind log is kept in <cargo target dir>/valgrind-leakcheck.log.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
  echo "valgrind.sh: valgrind is not installed" >&2
  exit 1
fi

profile="${PROFILE:-debug}"
if [ "$profile" = release ]; then
  CARGO_PROFILE_RELEASE_DEBUG=true cargo build --quiet --release --example leakcheck
else
  cargo build --quiet --example leakcheck
fi
# The target directory as cargo finds it (CARGO_TARGET_DIR, .cargo/config).
target_dir=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir="${target_dir:-target}"
binary="$target_dir/$profile/examples/leakcheck"
log="$target_dir/valgrind-leakcheck.log"

status=0
# No backtrace capture: its symbol caches would show up as "still
# reachable" and blur the picture.
RUST_BACKTRACE=0 valgrind \
  --tool=memcheck \
  --leak-check=full \
  --show-leak-kinds=all \
  --errors-for-leak-kinds=definite,indirect \
  --error-exitcode=1 \
  --log-file="$log" \
  "$binary" || status=$?

# The summary lines, for the CI log.
grep -E "ERROR SUMMARY|(definitely lost|indirectly lost|possibly lost|still reachable):|All heap blocks were freed" "$log" \
  | sed 's/^==[0-9]*== *//' || true

if [ "$status" -ne 0 ]; then
  echo "valgrind.sh: FAILED (exit status $status); see $log" >&2
  exit 1
fi
if grep -q "All heap blocks were freed" "$log"; then
  echo "valgrind.sh: ok (no block left at exit)"
  exit 0
fi
if grep -Eq "definitely lost: 0 bytes in 0 blocks" "$log" \
  && grep -Eq "indirectly lost: 0 bytes in 0 blocks" "$log"; then
  echo "valgrind.sh: ok (definitely lost: 0 bytes, indirectly lost: 0 bytes)"
  exit 0
fi
echo "valgrind.sh: FAILED: leaks reported; see $log" >&2
exit 1
