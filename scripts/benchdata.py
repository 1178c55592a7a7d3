"""Shared loading for scripts/bench-table.py and scripts/bench-chart.py.

Reads criterion's results (target/criterion/**/new/{benchmark,estimates}.json)
and, optionally, the text output of scripts/go-bench.sh, and lines them up
with the targets of issue 4. Plain Python 3, standard library only.
"""

import json
import os
import re

# Rows of issue 4: criterion group -> (label, target in ns or None, note).
# The order is the order of the table and of the chart.
TARGETS = [
    ("ErrOK", "err() on a live context", 1.0),
    ("ErrCanceled", "err() on a canceled context", 1.0),
    ("CommonParentCancel/threads=1", "child of a live parent + cancel, 1 thread", 60.0),
    ("CommonParentCancel/threads=2", "same, 2 threads sharing the parent", 80.0),
    ("ChildDrop", "child of a live parent, dropped (RAII cancel)", None),
    ("CancelTree/depth=1000/OpenCanceler", "chain of 1000, build + cancel root", 90_000.0),
    ("FanOut/children=1000", "fan-out of 1000, build + cancel root", 50_000.0),
    ("CheckCanceled/Done", "poll done() once, canceled", 5.0),
    ("ContextCancelDone", "poll done() once, live, 2 threads", 10.0),
    ("WithTimeout/concurrency=4000", "with_timeout + cancel, 4000 live timers", 150.0),
    ("DeepValueSameGoRoutine/depth=100", "value miss through 100 layers", 400.0),
]


def go_name(group):
    """The Go benchmark (from go-bench.sh's output) measuring `group`, and a
    divisor that turns its ns/op into the same unit as our row."""
    m = re.fullmatch(r"CancelTree/depth=(\d+)/(\w+)", group)
    if m:
        return "BenchmarkCancelTree/depth=%s/Root=%s" % m.groups(), 1
    if group == "CommonParentCancel/threads=1":
        # Go's own BenchmarkCommonParentCancel adds ~200 dummy divisions
        # per op; the same-shape companion in go_extra_test.go does not.
        return "BenchmarkCommonParentCancelBare/threads=1", 1
    if group == "CommonParentCancel/threads=2":
        return "BenchmarkCommonParentCancelBare/parallel", 1
    if group.startswith("WithTimeout/"):
        # One context per op on one goroutine, like our row.
        return "BenchmarkWithTimeoutSingle/" + group.split("/", 1)[1], 1
    if group.startswith("FanOut/"):
        return "BenchmarkFanOut/" + group.split("/", 1)[1], 1
    if group == "WakeLatency/task":
        return "BenchmarkWakeLatency", 1
    if group in ("ContextCancelDone/threads=1", "WakeLatency/thread", "ChildDrop"):
        return None, 1
    return "Benchmark" + group, 1


def target_dir():
    """The cargo target directory, found as cargo finds it (honours
    CARGO_TARGET_DIR and .cargo/config), falling back to ./target."""
    import json
    import subprocess
    try:
        out = subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            check=True, capture_output=True, text=True).stdout
        return json.loads(out)["target_directory"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        return "target"


def default_criterion_dir():
    return os.path.join(target_dir(), "criterion")


def load_criterion(root=None):
    root = root or default_criterion_dir()
    """{group: {function: median ns}} from criterion's latest run."""
    results = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        group = bench["group_id"]
        function = bench.get("function_id") or ""
        results.setdefault(group, {})[function] = est["median"]["point_estimate"]
    return results


def load_go(path):
    """{benchmark name without the -GOMAXPROCS suffix: ns} from `go test
    -bench` output. A custom `wake-ns/op` metric wins over ns/op."""
    results = {}
    if not path or not os.path.exists(path):
        return results
    line_re = re.compile(r"^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)$")
    with open(path) as f:
        for line in f:
            m = line_re.match(line.strip())
            if not m:
                continue
            name, ns, rest = m.group(1), float(m.group(2)), m.group(3)
            wake = re.search(r"([\d.]+) wake-ns/op", rest)
            results[name] = float(wake.group(1)) if wake else ns
    return results


def go_value(go, group):
    name, divisor = go_name(group)
    if name is None or name not in go:
        return None
    return go[name] / divisor


def fmt_ns(ns):
    """A duration in ns, printed with a unit that keeps 3 significant digits."""
    if ns is None:
        return "n/a"
    for unit, scale in (("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return "%.3g %s" % (ns / scale, unit)
    return "%.3g ns" % ns


def sort_key(group):
    """Groups in a stable order: by name, numbers compared as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", group)]
