#!/usr/bin/env python3
"""Renders docs/bench.svg: goctx vs tokio-util vs Go on the rows of issue 4.

Usage: scripts/bench-chart.py [--criterion DIR]... [--go GO_OUTPUT] [--out FILE]

With several --criterion directories (copies of target/criterion from
separate runs), each bar is the median over the runs.

One horizontal band per operation, one bar per implementation, on a
logarithmic time axis (the rows span from below a nanosecond to hundreds of
microseconds); a red tick marks the target of issue 4. The SVG is written by
hand: no third-party packages.
"""

import argparse
import math
import os
import statistics
import sys
from xml.sax.saxutils import escape

sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchdata  # noqa: E402

SERIES = [("goctx", "#2b6cb0"), ("tokio-util", "#d69e2e"), ("Go", "#38a169")]
LEFT = 300          # room for the row labels
PLOT_W = 560        # width of the plot area
RIGHT = 90          # room for the value labels past the longest bar
TOP = 56            # title and legend
BAR_H = 11
BAR_GAP = 2
ROW_GAP = 14
AXIS_H = 40
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion", action="append",
                        help="criterion output dir; repeat for several runs "
                             "(default <cargo target dir>/criterion)")
    parser.add_argument("--go", help="output of scripts/go-bench.sh")
    parser.add_argument("--out", default="docs/bench.svg")
    args = parser.parse_args()

    runs = [benchdata.load_criterion(d) for d in (args.criterion or [benchdata.default_criterion_dir()])]
    if not all(runs):
        sys.exit("no criterion results: run `cargo bench -p integration --bench context` first")
    go = benchdata.load_go(args.go)

    def median(group, function):
        values = [r[group][function] for r in runs if function in r.get(group, {})]
        return statistics.median(values) if values else None

    rows = []
    for group, label, target in benchdata.TARGETS:
        values = [median(group, "goctx"), median(group, "tokio-util"),
                  benchdata.go_value(go, group)]
        rows.append((label, values, target))

    everything = [v for _, vs, t in rows for v in vs + [t] if v]
    # Strictly below the smallest value, so a bar or tick never sits on the axis.
    lo = 10 ** math.floor(math.log10(min(everything) * 0.999))
    hi = 10 ** math.ceil(math.log10(max(everything)))

    def x(ns):
        return LEFT + PLOT_W * (math.log10(ns) - math.log10(lo)) / (
            math.log10(hi) - math.log10(lo))

    band = len(SERIES) * (BAR_H + BAR_GAP) + ROW_GAP
    height = TOP + band * len(rows) + AXIS_H
    width = LEFT + PLOT_W + RIGHT
    out = []
    add = out.append
    add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
        'viewBox="0 0 %d %d">' % (width, height, width, height))
    add('<rect width="100%" height="100%" fill="white"/>')
    add('<text x="%d" y="20" %s font-size="15" font-weight="bold">goctx vs tokio-util vs Go: '
        'time per operation (log scale; lower is better)</text>' % (10, FONT))
    note = "criterion medians" + (", median of %d runs" % len(runs) if len(runs) > 1 else "")
    add('<text x="%d" y="20" %s font-size="11" text-anchor="end" fill="#4a5568">%s</text>'
        % (LEFT + PLOT_W + RIGHT - 10, FONT, escape(note)))

    # Legend.
    lx = 10
    for name, color in SERIES:
        add('<rect x="%d" y="32" width="12" height="12" fill="%s"/>' % (lx, color))
        add('<text x="%d" y="42" %s font-size="12">%s</text>' % (lx + 16, FONT, name))
        lx += 100
    add('<line x1="%d" y1="31" x2="%d" y2="45" stroke="#e53e3e" stroke-width="2"/>' % (lx, lx))
    add('<text x="%d" y="42" %s font-size="12">target (issue 4)</text>' % (lx + 6, FONT))

    # Decade grid lines and axis labels.
    plot_bottom = TOP + band * len(rows)
    decade = lo
    while decade <= hi * 1.0001:
        gx = x(decade)
        add('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e2e8f0"/>'
            % (gx, TOP - 4, gx, plot_bottom))
        add('<text x="%.1f" y="%d" %s font-size="11" text-anchor="middle">%s</text>'
            % (gx, plot_bottom + 16, FONT, escape(benchdata.fmt_ns(decade))))
        decade *= 10
    add('<text x="%d" y="%d" %s font-size="11" text-anchor="middle">time per operation</text>'
        % (LEFT + PLOT_W // 2, plot_bottom + 32, FONT))

    for i, (label, values, target) in enumerate(rows):
        y0 = TOP + i * band
        add('<text x="%d" y="%d" %s font-size="12" text-anchor="end">%s</text>'
            % (LEFT - 8, y0 + band // 2, FONT, escape(label)))
        for j, ((name, color), v) in enumerate(zip(SERIES, values)):
            by = y0 + j * (BAR_H + BAR_GAP)
            if v is None:
                add('<text x="%d" y="%d" %s font-size="10" fill="#718096">%s: n/a</text>'
                    % (LEFT + 4, by + BAR_H - 2, FONT, name))
                continue
            bw = max(x(v) - LEFT, 1)
            add('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s">'
                '<title>%s: %s</title></rect>'
                % (LEFT, by, bw, BAR_H, color, name, escape(benchdata.fmt_ns(v))))
            add('<text x="%.1f" y="%d" %s font-size="10">%s</text>'
                % (LEFT + bw + 4, by + BAR_H - 2, FONT, escape(benchdata.fmt_ns(v))))
        if target:
            tx = x(target)
            add('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e53e3e" stroke-width="2">'
                '<title>target: %s</title></line>'
                % (tx, y0 - 2, tx, y0 + len(SERIES) * (BAR_H + BAR_GAP),
                   escape(benchdata.fmt_ns(target))))
    add('</svg>')

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
