#!/usr/bin/env python3
"""Keeps the layering of src/ honest (docs/ARCHITECTURE.md, "Layers").

Every module of src/ has a layer; a module may use modules of its own layer
or below, never above, and the graph of uses has no cycle. The core
(src/tree/) must not name the public handles, and the timer must not name
the core's node. Uses are `crate::<module>` paths in code: comments, doc
comments and unit-test modules (`#[cfg(...test...)] mod tests`) are not
looked at (a unit test may use the whole crate).

Integrations (layer 7 and up) use the public API, plus the side doors
listed in SIDE_DOORS and nothing else: a `crate::` path from an
integration must name an item a user can name too (re-exported at the
root, or `pub` in a public module), or be listed. Run from anywhere; exits
1 with the offending lines.
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
    "context": 4,
    "value": 5, "cancel": 5, "after": 5, "done": 5, "stream": 5, "drained": 5,
    "deadline": 6, "merge": 6, "group": 6, "propagation": 6,
    # integrations behind features
    "tokio": 7, "tokio_util": 7, "opentelemetry": 7, "nats": 7, "http": 7, "postgres": 7, "rusqlite": 7,
    # integrations built on another integration
    "tonic": 8,
}
SKIP = {"lib", "loom_models"}
# The integrations' ways into goctx's private parts, each with its reason
# (docs/ARCHITECTURE.md, "Side doors"): (module, path after `crate::`).
SIDE_DOORS = {
    # A request's id, trace and peer share one value node, read by key bit.
    ("http", "propagation::values::Extra"): "request values in one node",
    ("http", "propagation::values::LazyRequestId"): "request values in one node",
    ("http", "propagation::values::Values"): "request values in one node",
    ("http", "tree::key_bit"): "request values in one node",
    # A token's end tells a bridged context without a thread or a task.
    ("tokio_util", "tree::Source"): "a CancellationToken as a parent",
    ("tokio_util", "sync::Mutex"): "the loom-aware lock of that parent",
    # The errgroup rules shared with the runtime-free forms.
    ("tokio", "group::Failure"): "errgroup rules shared with group::",
    ("tokio", "group::check_set_limit"): "errgroup rules shared with group::",
    # The HTTP layers' OpenTelemetry support (compiled with both features).
    ("http", "opentelemetry::Carried"): "the OpenTelemetry context a request carries",
    ("http", "opentelemetry::ReadAdapter"): "headers read by the global propagator",
    ("http", "opentelemetry::span_context_of"): "a TraceContext as a span context",
    ("http", "opentelemetry::trace_context_of"): "a span context as a TraceContext",
    # A query's error that carries the context's err() and cause().
    ("postgres", "error::Ended"): "the context's end inside a driver error",
    ("rusqlite", "error::Ended"): "the context's end inside a driver error",
}
# Crate-private methods of public types that integrations call. Paths are
# checked above; method calls are found by name: every `pub(crate) fn` of
# a lower module is looked for in the integrations as `.name(` or
# `::name(`, except names too common to tell apart (AMBIGUOUS), whose
# uses are checked by hand and listed here all the same.
METHOD_DOORS = {
    ("http", "cancel_with_shared_cause"): "one Arc'd cause for every request (CancelFunc)",
    ("http", "into_cause"): "a context error as a Cause without a new allocation (Error)",
    ("tonic", "into_cause"): "a context error as a Cause without a new allocation (Error)",
    ("http", "attach"): "the request's value set under its context (Values)",
    ("opentelemetry", "from_parts"): "a TraceContext from a span context's fields",
    ("tokio", "panicked"): "errgroup rules shared with group:: (Failure)",
    ("tokio", "finish"): "errgroup rules shared with group:: (Failure)",
    ("tokio", "dropped"): "errgroup rules shared with group:: (Failure)",
}
# Names that std, http or OpenTelemetry also use for their own methods.
AMBIGUOUS = {"new", "attach", "from_parts", "finish", "dropped", "error", "get", "set", "len",
             "is_empty", "clone", "take", "insert", "remove", "push", "pop", "poll", "wake",
             "now", "is_zero", "source", "current", "kind", "spawn", "subscribe", "lock",
             "get_mut"}
INTEGRATION = 7  # the root re-exports everything; loom models are tests
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

# The public API: names re-exported at the root, public modules, and in
# those the items declared plainly `pub`.
lib = (src / "lib.rs").read_text()
root_names = set()
for group in re.findall(r"^pub use [a-z_:]+::\{([^}]*)\};", lib, re.M):
    root_names.update(n.strip() for n in group.split(",") if n.strip())
root_names.update(re.findall(r"^pub use [a-z_:]+::([A-Za-z_]+);", lib, re.M))
public_modules = set(re.findall(r"^pub mod ([a-z_]+)(?:;| \{)", lib, re.M))
# Facade modules written inline in lib.rs (`pub mod future { pub use ... }`):
# what they re-export is public too, under their path or the private one.
for facade, body in re.findall(r"^pub mod ([a-z_]+) \{\n(.*?)^\}", lib, re.M | re.S):
    for group in re.findall(r"pub use [a-z_:]+::\{([^}]*)\};", body):
        root_names.update(n.strip() for n in group.split(",") if n.strip())
    root_names.update(re.findall(r"pub use [a-z_:]+::([A-Za-z_]+);", body))


def module_files(module):
    """The files of a module of src/: `module.rs`, or every file of its folder."""
    single = src / f"{module}.rs"
    return [single] if single.exists() else sorted((src / module).rglob("*.rs"))


def declared_pub(module, name):
    """Whether `name` is declared plainly `pub` (or re-exported) in `module`."""
    if not (src / f"{module}.rs").exists() and not (src / module).is_dir():
        return name in root_names  # an inline facade of lib.rs
    for f in module_files(module):
        text = f.read_text()
        if re.search(rf"^\s*pub (?:async )?(?:const )?(?:fn|struct|enum|trait|type|const|static|mod) {name}\b", text, re.M):
            return True
        if re.search(rf"^pub use [^;]*\b{name}\b[^;]*;", text, re.M):
            return True
    return False


def public(path):
    parts = path.split("::")
    if len(parts) == 1:
        return parts[0] in root_names or parts[0] in public_modules or parts[0][0].islower()
    module, name = parts[0], parts[-1]
    if module in public_modules:
        # A private submodule on the way is a side door.
        for sub in parts[1:-1]:
            if re.search(rf"^pub\(crate\) mod {sub}\b|^mod {sub}\b", (src / module / "mod.rs").read_text() if (src / module / "mod.rs").exists() else "", re.M):
                return False
        return declared_pub(module, name) or name in root_names
    return name in root_names


side_doors = []
for path in sorted(src.rglob("*.rs")):
    mod = module_of(path)
    if mod in SKIP or LAYERS.get(mod, 0) < INTEGRATION:
        continue
    lines = code_lines(path)
    text = "\n".join(code for _, code in lines)
    found = set()
    for prefix, group in re.findall(r"crate::((?:[a-z_]+::)*)\{([^}]*)\}", text):
        for item in group.split(","):
            item = re.sub(r"\s+as\s+\w+", "", item).strip()
            if item and item != "self":
                found.add(prefix + item)
    for item in re.findall(r"crate::((?:[a-z_]+::)*[A-Za-z_]+)(?!::\{)", text):
        found.add(item)
    for item in sorted(found):
        if item.split("::")[0] == mod:
            continue
        # Trait methods and associated items: judge the type or trait.
        parts = item.split("::")
        while len(parts) > 2 and parts[-2][:1].isupper():
            parts = parts[:-1]
        item = "::".join(parts)
        if not public(item) and (mod, item) not in SIDE_DOORS:
            side_doors.append(f"{path.relative_to(src.parent)}: `crate::{item}` is not public API; "
                              "use the public API or add it to SIDE_DOORS with a reason")
private_methods = set()
for path in sorted(src.rglob("*.rs")):
    if module_of(path) in SKIP or LAYERS.get(module_of(path), 0) >= INTEGRATION:
        continue
    private_methods.update(re.findall(r"pub\(crate\) (?:const )?fn ([a-z_0-9]+)", path.read_text()))
# A name that is also a public method somewhere is a public call.
for path in sorted(src.rglob("*.rs")):
    private_methods.difference_update(re.findall(r"\bpub (?:const )?(?:async )?fn ([a-z_0-9]+)", path.read_text()))
for path in sorted(src.rglob("*.rs")):
    mod = module_of(path)
    if mod in SKIP or LAYERS.get(mod, 0) < INTEGRATION:
        continue
    for number, code in code_lines(path):
        for name in re.findall(r"(?:\.|::)([a-z_0-9]+)\(", code):
            if name in private_methods and name not in AMBIGUOUS and (mod, name) not in METHOD_DOORS:
                side_doors.append(f"{path.relative_to(src.parent)}:{number}: calls crate-private `{name}`; "
                                  "use the public API or add it to METHOD_DOORS with a reason")

unused = [f"{m}: crate::{p}" for (m, p) in SIDE_DOORS
          if not any(re.search(rf"\b{re.escape(p.split('::')[-1])}\b", f.read_text())
                     for f in module_files(m))]

unused += [f"{m}: {n}()" for (m, n) in METHOD_DOORS
           if not any(re.search(rf"(?:\.|::){n}\(", f.read_text()) for f in module_files(m))]
failures = list(names) + side_doors + [f"side door no longer used (remove it): {u}" for u in unused]
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
print(f"check-layers: {len(LAYERS)} modules, {len(uses)} uses between them, no cycle, none upward; "
      f"integrations use the public API, {len(SIDE_DOORS)} listed paths and {len(METHOD_DOORS)} listed methods")
