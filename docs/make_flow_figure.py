"""Draw docs/flow.mmd (the data-flow chart, mermaid syntax) as docs/img/flow.png.

The docs show the PNG, so the chart reads offline and without a mermaid script; the .mmd file
stays the one source of both. Layout: solid edges set the columns (longest path from a
source), dashed edges (what stands beside the data flow) put their source above its target.

Run: python docs/make_flow_figure.py
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

HERE = Path(__file__).parent
NODE = re.compile(r'^\s*(\w+)(?:\["(.*?)"\])?\s*$')
ARROW = re.compile(r"\s*(-->|-\.\s*(.*?)\s*\.->)\s*")


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, str, bool, str]]]:
    """Nodes (id -> label) and edges (source, target, dashed, label) of a mermaid flowchart."""
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str, bool, str]] = []
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        parts = ARROW.split(line)
        # split keeps the groups: node, arrow, dashed label, node, arrow, label, node...
        refs, arrows = parts[0::3], list(zip(parts[1::3], parts[2::3]))
        ids = []
        for ref in refs:
            m = NODE.match(ref)
            if m is None:
                raise ValueError(f"cannot read node {ref!r} in line {line!r}")
            ids.append(m.group(1))
            if m.group(2) is not None:
                nodes[m.group(1)] = m.group(2).replace("<br/>", "\n")
            nodes.setdefault(m.group(1), m.group(1))
        for (a, b), (arrow, label) in zip(zip(ids, ids[1:]), arrows):
            edges.append((a, b, arrow != "-->", label or ""))
    return nodes, edges


def layout(nodes: dict[str, str], edges: list) -> dict[str, tuple[float, float]]:
    """Columns: distance from the end of the flow (so parallel branches line up); rows: order
    of appearance within a column; side nodes (dashed) above their target, spread out."""
    solid = [(a, b) for a, b, dashed, _ in edges if not dashed]
    side = [(a, b) for a, b, dashed, _ in edges if dashed]
    main = [n for n in nodes if n not in {a for a, _ in side}]
    to_end = {n: 0 for n in main}
    for _ in main:  # longest path to a sink (the chart is acyclic)
        for a, b in solid:
            to_end[a] = max(to_end[a], to_end[b] + 1)
    last = max(to_end.values())
    pos: dict[str, tuple[float, float]] = {}
    rows: dict[int, int] = {}
    for n in main:
        col = last - to_end[n]
        pos[n] = (col * 2.3, -rows.get(col, 0) * 1.3)
        rows[col] = rows.get(col, 0) + 1
    by_target: dict[str, list[str]] = {}
    for a, b in side:
        by_target.setdefault(b, []).append(a)
    for b, sources in by_target.items():
        for i, a in enumerate(sources):
            pos[a] = (pos[b][0] + (i - (len(sources) - 1) / 2) * 2.2, 1.6)
    return pos


def draw(nodes: dict[str, str], edges: list, out: Path) -> None:
    pos = layout(nodes, edges)
    fig, ax = plt.subplots(figsize=(13, 5.2), dpi=100)
    w, h = 1.9, 0.95
    for n, (x, y) in pos.items():
        side = any(a == n and dashed for a, _, dashed, _ in edges)
        box = FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.05",
            fc="#fff4e0" if side else "#e8f0fe",
            ec="#c07000" if side else "#3060c0",
        )
        ax.add_patch(box)
        ax.text(x, y, nodes[n], ha="center", va="center", fontsize=8.5)
    for a, b, dashed, label in edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        start = (xa, ya - h / 2) if dashed else (xa + w / 2, ya)
        end = (xb, yb + h / 2) if dashed else (xb - w / 2, yb)
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops=dict(
                arrowstyle="-|>",
                color="#c07000" if dashed else "#333333",
                linestyle="--" if dashed else "-",
                lw=1.2,
                shrinkA=2,
                shrinkB=2,
            ),
        )
        if label:
            ax.text(
                (start[0] + end[0]) / 2 + 0.05,
                (start[1] + end[1]) / 2,
                label,
                fontsize=7.5,
                color="#c07000",
                ha="left",
                va="center",
            )
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    ax.set_xlim(min(xs) - 1.1, max(xs) + 1.1)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    nodes, edges = parse((HERE / "flow.mmd").read_text())
    out = HERE / "img" / "flow.png"
    out.parent.mkdir(exist_ok=True)
    draw(nodes, edges, out)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
