#!/usr/bin/env python3
"""Checks that docs/ARCHITECTURE.md's code map matches the folders.

Every source file under src/ and examples/ (and the dashboard page) must
be named in the code map: by its own bullet (`src/cancel.rs`), or inside
the bullet of the folder that holds it, by its path from that folder
(`server/layer.rs`) or, after the subfolder is named, by its file name.
The other way round, every file name a bullet gives must exist under
that bullet's folder, so a renamed or deleted file cannot linger in the
map. Run from anywhere; exits 1 with what is missing or stale.
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
doc = (root / "docs" / "ARCHITECTURE.md").read_text()
section = doc.split("\n## Code map\n", 1)[1].split("\n## ", 1)[0]

# Top-level bullets: "- `path`, `path`: text", continued by indented lines.
bullets = re.findall(r"^- (.*(?:\n(?!- ).*)*)", section, re.M)
named = []  # (paths the bullet is about, its text)
for bullet in bullets:
    head = bullet.split(":", 1)[0]
    paths = re.findall(r"`((?:src|examples|integration)/[^`]*)`", head)
    named.append((paths, bullet))

files = sorted(p for p in (root / "src").rglob("*.rs"))
files += sorted(p for p in (root / "examples").rglob("*")
                if p.suffix in (".rs", ".html") and "tasks" not in p.parts)

problems = []
for f in files:
    rel = f.relative_to(root).as_posix()
    if f"`{rel}`" in section:
        continue
    # The bullet of the deepest folder holding the file.
    best = None
    for paths, text in named:
        for p in paths:
            if p.endswith("/") and rel.startswith(p) and (best is None or len(p) > len(best[0])):
                best = (p, text)
    if best is None:
        problems.append(f"{rel}: no code-map bullet names it or its folder")
        continue
    folder, text = best
    inner = rel[len(folder):]
    if f"`{inner}`" in text or f"`{folder}{inner}`" in text:
        continue
    parts = inner.split("/")
    if len(parts) == 1:
        ok = f"`{inner}`" in text
    else:
        # `sub/` named, then the file's name after it.
        sub = "/".join(parts[:-1]) + "/"
        at = text.find(f"`{sub}")
        ok = at >= 0 and f"`{parts[-1]}`" in text[at:]
    if not ok:
        problems.append(f"{rel}: not named in the code-map bullet of `{folder}`")

# Stale names: a file name a folder's bullet gives must exist under it.
for paths, text in named:
    for p in paths:
        if not (root / p).exists():
            problems.append(f"code map names `{p}`, which does not exist")
    folders = [p for p in paths if p.endswith("/")]
    if not folders:
        continue
    for name in set(re.findall(r"`([\w/]+\.(?:rs|html))`", text)):
        if name.startswith(("src/", "examples/", "integration/")):
            continue
        if (root / "src" / name).exists():
            continue
        if not any((root / d / name).exists() or any((root / d).rglob(name.split("/")[-1]))
                   for d in folders):
            problems.append(f"code map names `{name}` under {', '.join(folders)}, which does not exist")

if problems:
    print("check-codemap: docs/ARCHITECTURE.md's code map and the folders differ:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"check-codemap: {len(files)} files under src/ and examples/, each named in the code map; no stale name")
