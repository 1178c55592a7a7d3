#!/usr/bin/env python3
"""Keeps the layering of src/ honest (docs/ARCHITECTURE.md, "Layers").

Every module of src/ has a layer; a module may use modules of its own layer
or below, never above, and the graph of uses has no cycle. The core
(src/tree/) must not name the public handles, and the timer must not name
the core's node. Uses are `crate::<module>` paths in code: comments, doc
comments and unit-test modules (`#[cfg(...test...)] mod tests`) are not
looked at. Run from anywhere; exits 1 with the offending lines.
"""
import pathlib
import re
import sys

LAYERS = {
    # primitives
    "error": 0, "name": 0, "sync": 0, "wheel": 0,
    # drivers: helper threads and clocks; know only the core's traits
    "spawn": 1, "timer": 1, "clock": 1, "tokio_clock": 1, "may_block": 1,
    # the private core
    "tree": 2,
    # the public surface, bottom to top
    "custom": 3,
    "context": 4, "subscribers": 4,
    "value": 5, "cancel": 5, "after": 5, "done": 5, "stream": 5, "drained": 5,
    "deadline": 6, "merge": 6, "group": 6, "propagation": 6,
    # integrations behind features
    "tokio": 7, "tokio_util": 7, "opentelemetry": 7, "nats": 7, "http": 7, "postgres": 7, "rusqlite": 7,
    # integrations built on another integration
    "tonic": 8,
}
SKIP = {"lib", "loom_models"}  # the root re-exports everything; loom models are tests
# Names of the public surface that the core must never mention.
CORE_MUST_NOT_NAME = ["Ctx", "Context", "Notify", "Subscription", "AfterState", "AfterFunc",
                      "CancelFunc"]

src = pathlib.Path(__file__).resolve().parent.parent / "src"


def module_of(path):
    rel = path.relative_to(src).parts
    return rel[0][:-3] if len(rel) == 1 else rel[0]


def code_lines(path):
    """The file's code: comments dropped, unit-test modules cut off."""
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if (re.match(r"#\[cfg\(.*\btest\b.*\)\]$", stripped) and i + 1 < len(lines)
                and re.match(r"\s*mod tests\b", lines[i + 1])):
            break
        code = re.sub(r"//.*", "", line)
        out.append((i + 1, code))
    return out


uses = {}  # (from, to) -> [where]
names = []  # violations of the absence rules
for path in sorted(src.rglob("*.rs")):
    mod = module_of(path)
    if mod in SKIP:
        continue
    if mod not in LAYERS:
        sys.exit(f"check-layers: {path.relative_to(src.parent)} has no layer; add it to LAYERS")
    lines = code_lines(path)
    text = "\n".join(code for _, code in lines)
    # `use crate::{a, b::c}` groups, then plain `crate::a` paths
    for group in re.findall(r"crate::\{([^}]*)\}", text):
        for target in re.findall(r"(?:^|,)\s*([a-z_]+)", group):
            if target in LAYERS and target != mod:
                uses.setdefault((mod, target), []).append(str(path.relative_to(src.parent)))
    for number, code in lines:
        for target in re.findall(r"crate::([a-z_]+)\b", code):
            if target in LAYERS and target != mod:
                uses.setdefault((mod, target), []).append(f"{path.relative_to(src.parent)}:{number}")
        if mod == "tree":
            for name in CORE_MUST_NOT_NAME:
                if re.search(rf"\b{name}\b", code):
                    names.append(f"{path.relative_to(src.parent)}:{number}: the core names `{name}`")
        if mod == "timer" and re.search(r"\bCancelNode\b", code):
            names.append(f"{path.relative_to(src.parent)}:{number}: the timer names `CancelNode`")

failures = list(names)
for (a, b), where in sorted(uses.items()):
    if LAYERS[b] > LAYERS[a]:
        failures.append(f"upward use: {a} (layer {LAYERS[a]}) uses {b} (layer {LAYERS[b]}) at {where[0]}")

# cycles (depth-first search over the module graph)
graph = {}
for a, b in uses:
    graph.setdefault(a, set()).add(b)
state = {}


def visit(node, stack):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
        if state.get(nxt) == "open":
            cycle = stack[stack.index(nxt):] + [nxt]
            failures.append("cycle: " + " -> ".join(cycle))
        elif nxt not in state:
            visit(nxt, stack)
    stack.pop()
    state[node] = "done"


for node in sorted(graph):
    if node not in state:
        visit(node, [])

if failures:
    print("check-layers: the layering in docs/ARCHITECTURE.md is broken:")
    for failure in failures:
        print("  " + failure)
    sys.exit(1)
print(f"check-layers: {len(LAYERS)} modules, {len(uses)} uses between them, no cycle, none upward")
