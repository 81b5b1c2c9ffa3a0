"""Draw docs/flow.mmd (the data-flow chart, mermaid syntax) as docs/img/flow.png.

The docs show the PNG, so the chart reads offline and without a mermaid script; the .mmd file
stays the one source of both. Mermaid has no syntax for two things the figure needs, so the
chart carries them as comment lines, which mermaid ignores:

- ``%% at: ID COL ROW``: the grid cell of a node (fractions allowed: 1.5 sits between columns
  1 and 2). A subgraph is drawn as a frame around its nodes, its title above or below them,
  wherever no arrow crosses it.
- ``%% code: ID NAME ...``: the code a node, a subgraph or a labelled edge (``A->B``) stands
  for, as dotted import paths. tests/test_docs_flow.py imports every name and checks that its
  last part appears in the label, so a rename in the code fails the test until the chart
  follows it.

The script checks the drawing before it writes it (no box on another, no arrow through a box,
no label outside its box or over another, one screen: at most ``MAX_W`` x ``MAX_H`` pixels and
``MAX_BYTES``), and stamps the PNG with a hash of flow.mmd and of this script
(:func:`source_digest`), so a test can tell a stale PNG from a current one.

Run: python docs/make_flow_figure.py [--check]   (--check: exit 1 if the PNG is stale)
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "flow.mmd"
OUT = HERE / "img" / "flow.png"
#: PNG text chunk holding :func:`source_digest` of the sources the PNG was drawn from.
DIGEST_KEY = "modfuse:flow-source"

# One screen at the docs' width: the figure is drawn 1:1 (100 dpi, 1 data unit = 1 pixel).
MAX_W, MAX_H, MAX_BYTES = 800, 700, 200_000
DPI = 100
COL, ROW = 200, 124  # grid pitch in pixels
MARGIN = 8
MIN_W, BOX_PAD_X, BOX_PAD_Y = 116, 9, 8  # box width floor, text padding inside boxes
FRAME_PAD, TITLE_H = 10, 17  # frame padding around its nodes, height of its title band
GAP = 4  # the least space between two boxes
FONT = FontProperties(family="DejaVu Sans", size=8)
SMALL = FontProperties(family="DejaVu Sans", size=7.5)
TITLE = FontProperties(family="DejaVu Sans", size=8, weight="bold")
DEFAULT_STYLE = {"fill": "#ffffff", "stroke": "#333333"}
EDGE_COLOR = "#333333"

NODE = re.compile(r'^(\w+)(?:\["(.*)"\])?$')
ARROW = re.compile(r'\s*(-->|-\.->)(?:\|"?([^|"]*)"?\|)?\s*')
AT = re.compile(r"^%%\s*at:\s*(\w+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s*$")
CODE = re.compile(r"^%%\s*code:\s*(\S+)\s+(.+)$")


@dataclass
class Edge:
    source: str
    target: str
    dashed: bool
    label: str

    @property
    def key(self) -> str:
        return f"{self.source}->{self.target}"


@dataclass
class Chart:
    """A mermaid flowchart: nodes, subgraphs (frames), edges, styles, and the two comment
    kinds of this file (``at`` and ``code``)."""

    nodes: dict[str, str] = field(default_factory=dict)  # id -> label ("\n" between lines)
    frames: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # id -> label, nodes
    edges: list[Edge] = field(default_factory=list)
    at: dict[str, tuple[float, float]] = field(default_factory=dict)
    code: dict[str, list[str]] = field(default_factory=dict)
    styles: dict[str, dict[str, str]] = field(default_factory=dict)  # classDef name -> style
    node_class: dict[str, str] = field(default_factory=dict)

    def label(self, key: str) -> str:
        """The text shown for a node, a frame or a labelled edge (``"A->B"``)."""
        if key in self.nodes:
            return self.nodes[key]
        if key in self.frames:
            return self.frames[key][0]
        for e in self.edges:
            if e.key == key:
                return e.label
        raise KeyError(f"{key!r} is no node, subgraph or edge of the chart")

    def style(self, node: str) -> dict[str, str]:
        return {**DEFAULT_STYLE, **self.styles.get(self.node_class.get(node, ""), {})}


def parse(text: str) -> Chart:
    """Read the mermaid subset this chart uses (one statement a line)."""
    chart = Chart()
    frame: str | None = None
    seen_header = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"flow.mmd line {number}: {raw.strip()!r}"
        if not line:
            continue
        if line.startswith("%%"):
            if m := AT.match(line):
                chart.at[m.group(1)] = (float(m.group(2)), float(m.group(3)))
            elif m := CODE.match(line):
                chart.code.setdefault(m.group(1), []).extend(m.group(2).split())
            elif re.match(r"^%%\s*(at|code):", line):
                raise ValueError(f"{where}: cannot read this at: / code: line")
            continue
        if not seen_header:
            if not re.match(r"^flowchart\s+(TB|TD)$", line):
                raise ValueError(f"{where}: expected 'flowchart TB' first")
            seen_header = True
            continue
        if m := re.match(r"^classDef\s+(\w+)\s+(.+)$", line):
            chart.styles[m.group(1)] = dict(kv.split(":", 1) for kv in m.group(2).split(","))
        elif m := re.match(r"^class\s+([\w,]+)\s+(\w+)$", line):
            for node in m.group(1).split(","):
                chart.node_class[node] = m.group(2)
        elif m := re.match(r'^subgraph\s+(\w+)\["(.*)"\]$', line):
            if frame is not None:
                raise ValueError(f"{where}: nested subgraphs are not drawn")
            frame = m.group(1)
            chart.frames[frame] = (m.group(2), [])
        elif line == "end":
            if frame is None:
                raise ValueError(f"{where}: 'end' without a subgraph")
            frame = None
        else:
            parts = ARROW.split(line)
            refs, arrows, labels = parts[0::3], parts[1::3], parts[2::3]
            ids = []
            for ref in refs:
                m = NODE.match(ref.strip())
                if m is None:
                    raise ValueError(f"{where}: cannot read node {ref!r}")
                node, label = m.groups()
                ids.append(node)
                if label is not None:
                    chart.nodes[node] = label.replace("<br/>", "\n")
                elif node not in chart.frames:
                    chart.nodes.setdefault(node, node)
                if frame is not None and node not in chart.frames:
                    members = chart.frames[frame][1]
                    if node not in members and not any(node in f[1] for f in chart.frames.values()):
                        members.append(node)
            for a, b, arrow, label in zip(ids, ids[1:], arrows, labels):
                chart.edges.append(Edge(a, b, arrow == "-.->", label or ""))
    if frame is not None:
        raise ValueError(f"subgraph {frame!r} has no 'end'")
    return chart


# ---------------------------------------------------------------------------- geometry
Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, y growing downwards


def _overlap(a: Rect, b: Rect, gap: float = 0.0) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _grow(r: Rect, d: float) -> Rect:
    return (r[0] - d, r[1] - d, r[2] + d, r[3] + d)


def _center(r: Rect) -> tuple[float, float]:
    return ((r[0] + r[2]) / 2, (r[1] + r[3]) / 2)


def _exit(r: Rect, inside: tuple[float, float], toward: tuple[float, float]) -> tuple:
    """Where the segment from ``inside`` (in ``r``) to ``toward`` leaves the rectangle."""
    (x, y), (tx, ty) = inside, toward
    dx, dy = tx - x, ty - y
    ts = []
    if dx:
        ts += [(r[0] - x) / dx, (r[2] - x) / dx]
    if dy:
        ts += [(r[1] - y) / dy, (r[3] - y) / dy]
    t = min((t for t in ts if t > 0), default=0.0)  # 0: the two centres coincide
    return (x + t * dx, y + t * dy)


def _crosses(p: tuple, q: tuple, r: Rect) -> bool:
    """Whether the segment p-q passes through the rectangle (Liang-Barsky clipping)."""
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for d, lo, hi, v in ((dx, r[0], r[2], p[0]), (dy, r[1], r[3], p[1])):
        if d == 0:
            if not lo <= v <= hi:
                return False
            continue
        a, b = (lo - v) / d, (hi - v) / d
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
        if t0 > t1:
            return False
    return True


@dataclass
class Layout:
    boxes: dict[str, Rect]  # node -> box
    frames: dict[str, Rect]  # frame -> rectangle, title band included
    titles: dict[str, Rect]  # frame -> title text rectangle
    segments: dict[str, tuple[tuple, tuple]]  # edge key -> (start, end)
    labels: dict[str, Rect]  # edge key -> label rectangle
    size: tuple[int, int]  # canvas width, height


def layout(chart: Chart, measure) -> Layout:
    """Place nodes on their grid cells (a column's boxes share the width of its widest label),
    frames around their nodes, straight edges between box borders, labels on edge middles.

    ``measure(text, font) -> (width, height)`` in pixels.
    """
    missing = [n for n in chart.nodes if n not in chart.at]
    if missing:
        raise ValueError(f"no '%% at:' line for node(s) {missing}")
    size = {n: measure(chart.nodes[n], FONT) for n in chart.nodes}
    widths: dict[float, float] = {}
    for n, (w, _) in size.items():
        col = chart.at[n][0]
        widths[col] = max(widths.get(col, MIN_W), w + 2 * BOX_PAD_X)
    stray = [n for n in chart.at if n not in chart.nodes]
    if stray:
        raise ValueError(f"'%% at:' lines for {stray}, which are no nodes of the chart")
    empty = [f for f, (_, members) in chart.frames.items() if not members]
    if empty:
        raise ValueError(f"subgraph(s) {empty} hold no nodes")
    boxes = {}
    for n, (col, row) in chart.at.items():
        w, h = widths[col], size[n][1] + 2 * BOX_PAD_Y
        x, y = COL / 2 + col * COL, ROW / 2 + row * ROW
        boxes[n] = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)

    def node_segment(e: Edge) -> tuple[tuple, tuple]:
        ra, rb = boxes[e.source], boxes[e.target]
        ca, cb = _center(ra), _center(rb)
        return _exit(ra, ca, cb), _exit(rb, cb, ca)

    plain = [e for e in chart.edges if e.source in boxes and e.target in boxes]
    frames, titles = {}, {}
    for f, (label, members) in chart.frames.items():
        inner = _grow(
            (
                min(boxes[n][0] for n in members),
                min(boxes[n][1] for n in members),
                max(boxes[n][2] for n in members),
                max(boxes[n][3] for n in members),
            ),
            FRAME_PAD,
        )
        tw, th = measure(label, TITLE)
        options = []
        for side in ("top", "bottom"):
            y0 = inner[1] - TITLE_H if side == "top" else inner[3]  # the title band's top
            rect = (inner[0], min(y0, inner[1]), inner[2], max(y0 + TITLE_H, inner[3]))
            ty = y0 + (TITLE_H - th) / 2
            title = (inner[0] + 5, ty, inner[0] + 5 + tw, ty + th)
            crossed = any(_crosses(*node_segment(e), _grow(title, 2)) for e in plain)
            options.append((crossed, side, rect, title))
        _, _, frames[f], titles[f] = min(options, key=lambda o: o[0])  # the first uncrossed

    rects = {**boxes, **frames}
    segments, labels = {}, {}
    for e in chart.edges:
        ra, rb = rects[e.source], rects[e.target]
        ca, cb = _center(ra), _center(rb)
        # From or to a frame: straight across, level with the node where the node faces it.
        if e.source in frames and ra[1] <= cb[1] <= ra[3]:
            ca = (ca[0], cb[1])
        if e.target in frames and rb[1] <= ca[1] <= rb[3]:
            cb = (cb[0], ca[1])
        start, end = _exit(ra, ca, cb), _exit(rb, cb, ca)
        segments[e.key] = (start, end)
        if e.label:
            w, h = measure(e.label, SMALL)
            mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            labels[e.key] = (mx - w / 2 - 2, my - h / 2 - 1, mx + w / 2 + 2, my + h / 2 + 1)

    everything = [*boxes.values(), *frames.values()]
    x0 = min(r[0] for r in everything) - MARGIN
    y0 = min(r[1] for r in everything) - MARGIN
    x1 = max(r[2] for r in everything) + MARGIN
    y1 = max(r[3] for r in everything) + MARGIN

    def shift(r):
        return (r[0] - x0, r[1] - y0, r[2] - x0, r[3] - y0)

    def shift_pt(p):
        return (p[0] - x0, p[1] - y0)

    return Layout(
        boxes={k: shift(r) for k, r in boxes.items()},
        frames={k: shift(r) for k, r in frames.items()},
        titles={k: shift(r) for k, r in titles.items()},
        segments={k: (shift_pt(a), shift_pt(b)) for k, (a, b) in segments.items()},
        labels={k: shift(r) for k, r in labels.items()},
        size=(math.ceil(x1 - x0), math.ceil(y1 - y0)),
    )


def problems(chart: Chart, lay: Layout) -> list[str]:
    """What would make the drawing hard to read: overlaps, arrows through boxes, too big."""
    found = []
    w, h = lay.size
    if w > MAX_W or h > MAX_H:
        found.append(f"the figure is {w} x {h} px, more than one screen ({MAX_W} x {MAX_H})")
    nodes = list(lay.boxes)
    member = {n: f for f, (_, ms) in chart.frames.items() for n in ms}
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            if _overlap(lay.boxes[a], lay.boxes[b], GAP):
                found.append(f"boxes {a} and {b} overlap")
        for f, rect in lay.frames.items():
            if member.get(a) != f and _overlap(lay.boxes[a], rect, GAP):
                found.append(f"box {a} overlaps frame {f}")
    for f, title in lay.titles.items():
        if title[2] > lay.frames[f][2] - 4:
            found.append(f"the title of frame {f} is wider than the frame")
    frames = list(lay.frames)
    for i, a in enumerate(frames):
        for b in frames[i + 1 :]:
            if _overlap(lay.frames[a], lay.frames[b], GAP):
                found.append(f"frames {a} and {b} overlap")
    for e in chart.edges:
        p, q = lay.segments[e.key]
        for n, box in lay.boxes.items():
            if n not in (e.source, e.target) and _crosses(p, q, _grow(box, -1)):
                found.append(f"edge {e.key} runs through box {n}")
        for f, title in lay.titles.items():
            if _crosses(p, q, title):
                found.append(f"edge {e.key} runs through the title of frame {f}")
        if math.dist(p, q) < 16:
            found.append(f"edge {e.key} is {math.dist(p, q):.0f} px long: too short to read")
    shown = {f"title of {k}": r for k, r in lay.titles.items()}
    shown.update({f"box {k}": r for k, r in lay.boxes.items()})
    for key, rect in lay.labels.items():
        for what, other in shown.items():
            if _overlap(rect, other):
                found.append(f"label of edge {key} overlaps the {what}")
        shown[f"label of edge {key}"] = rect
    return found


# ---------------------------------------------------------------------------- drawing
def source_digest() -> str:
    """A hash of what the PNG is drawn from: flow.mmd and this script."""
    h = hashlib.sha256()
    for path in (SOURCE, Path(__file__).resolve()):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def png_digest(path: Path) -> str | None:
    """The source digest stamped into a PNG by :func:`draw` (None if it has none)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.text.get(DIGEST_KEY)


def draw(chart: Chart, out: Path, digest: str) -> Layout:
    """Lay the chart out, check the layout (ValueError listing what is wrong), write the PNG."""
    fig = plt.figure(dpi=DPI)
    renderer = fig.canvas.get_renderer()

    def measure(text: str, font: FontProperties) -> tuple[float, float]:
        t = fig.text(0, 0, text, fontproperties=font, linespacing=1.25)
        box = t.get_window_extent(renderer)
        t.remove()
        return box.width, box.height

    lay = layout(chart, measure)
    found = problems(chart, lay)
    if found:
        plt.close(fig)
        raise ValueError("the flow chart's layout does not read well:\n  " + "\n  ".join(found))
    w, h = lay.size
    fig.set_size_inches(w / DPI, h / DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    for f, rect in lay.frames.items():
        ax.add_patch(
            Rectangle(
                rect[:2],
                rect[2] - rect[0],
                rect[3] - rect[1],
                fc="#f8faff",
                ec="#8aa4d8",
                lw=1.0,
                ls=(0, (4, 2)),
                zorder=0,
            )
        )
        title = lay.titles[f]
        ax.text(
            title[0],
            _center(title)[1],
            chart.frames[f][0],
            fontproperties=TITLE,
            color="#3060c0",
            ha="left",
            va="center_baseline",
            zorder=1,
        )
    for n, rect in lay.boxes.items():
        style = chart.style(n)
        ax.add_patch(
            FancyBboxPatch(
                rect[:2],
                rect[2] - rect[0],
                rect[3] - rect[1],
                boxstyle="round,pad=0,rounding_size=5",
                fc=style["fill"],
                ec=style["stroke"],
                lw=1.1,
                zorder=2,
            )
        )
        ax.text(
            *_center(rect),
            chart.nodes[n],
            fontproperties=FONT,
            ha="center",
            va="center",
            multialignment="center",
            linespacing=1.25,
            zorder=3,
        )
    for e in chart.edges:
        (x0, y0), (x1, y1) = lay.segments[e.key]
        # A dashed edge has the colour of what stands beside the flow: its source node, or
        # its target where it leaves a frame.
        side = e.target if e.source in chart.frames else e.source
        color = chart.style(side)["stroke"] if e.dashed else EDGE_COLOR
        length = math.dist((x0, y0), (x1, y1))
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        head = 7.0
        ax.plot(
            [x0, x1 - ux * head],
            [y0, y1 - uy * head],
            color=color,
            lw=1.2,
            zorder=1.5,
            linestyle=(0, (4, 2.5)) if e.dashed else "-",
            solid_capstyle="butt",
        )
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x1 - ux * head, y1 - uy * head),
            zorder=1.6,
            arrowprops=dict(
                arrowstyle="-|>,head_length=0.5,head_width=0.22",
                color=color,
                lw=1.2,
                shrinkA=0,
                shrinkB=0,
            ),
        )
        if e.label:
            ax.text(
                *_center(lay.labels[e.key]),
                e.label,
                fontproperties=SMALL,
                ha="center",
                va="center",
                color=color if e.dashed else "#222222",
                zorder=4,
                bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none"),
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, metadata={"Software": None, DIGEST_KEY: digest})
    plt.close(fig)
    size = out.stat().st_size
    if size >= MAX_BYTES:
        out.unlink()
        raise ValueError(f"{out.name} is {size} bytes, over the {MAX_BYTES}-byte limit")
    return lay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the PNG is stale")
    args = parser.parse_args(argv)
    digest = source_digest()
    if args.check:
        stamped = png_digest(OUT) if OUT.is_file() else None
        if stamped != digest:
            print(f"{OUT} is stale: run python docs/make_flow_figure.py", file=sys.stderr)
            return 1
        print(f"{OUT} is current")
        return 0
    lay = draw(parse(SOURCE.read_text(encoding="utf-8")), OUT, digest)
    w, h = lay.size
    print(f"wrote {OUT} ({w} x {h} px, {OUT.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
