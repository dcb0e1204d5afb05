"""A self-contained HTML benchmark report: tables, inline SVG plots, example predictions with images.

No plotting library and no external assets: the page is one file that opens anywhere (and renders in
headless Chromium for the tests). Colours are fixed so that a screenshot test can find the plots.
"""

from __future__ import annotations

import base64
import html
import io
from math import cos as _cos, sin as _sin
from typing import Any

from PIL import Image

BAR_COLOURS = ["#1f5fbf", "#e0702a", "#2a9d4b", "#8e44ad", "#c0392b", "#16a085"]  # one per model
LINE_COLOURS = {"reward": "#1f5fbf", "format": "#e0702a", "correct": "#2a9d4b",
                # per-round curves of closed-loop runs (viper/loop.py)
                "overall": "#203864", "judge_acceptance": "#8a3ffc", "caption_spread": "#d12771",
                "caption_distinct_2": "#007d79", "instruction_distinct_2": "#b28600",
                # the paper report's Figure 2 (viper/paper_report.py)
                "with_cold_start": "#8e44ad", "without_cold_start": "#1f5fbf"}
HEADER_BG = "#203864"


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.1f}" if isinstance(v, float) else html.escape(str(v))


def table(header: list[str], rows: list[list[Any]], cls: str = "results") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def bar_chart(title: str, groups: list[str], series: dict[str, list[float | None]], width: int = 720,
              height: int = 260) -> str:
    """Grouped bars: one group per benchmark, one bar per model; values are percents (0-100)."""
    left, bottom, top = 40, 40, 30
    plot_w, plot_h = width - left - 10, height - bottom - top
    n_series = max(1, len(series))
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.8 / n_series
    parts = [f'<svg class="plot" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>']
    for tick in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - tick / 100)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{tick}</text>')
    for gi, group in enumerate(groups):
        x0 = left + gi * group_w + group_w * 0.1
        for si, (name, values) in enumerate(series.items()):
            v = values[gi] or 0.0
            h = plot_h * max(0.0, min(v, 100.0)) / 100
            # a 2-pixel floor keeps a 0% bar visible, so "scored zero" differs from "not evaluated"
            h = max(h, 2.0) if values[gi] is not None else 0.0
            parts.append(f'<rect x="{x0 + si * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w * 0.9:.1f}" '
                         f'height="{h:.1f}" fill="{BAR_COLOURS[si % len(BAR_COLOURS)]}">'
                         f'<title>{html.escape(name)} {html.escape(group)}: {_fmt(values[gi])}</title></rect>')
        parts.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                     f'font-size="10">{html.escape(group)}</text>')
    for si, name in enumerate(series):
        parts.append(f'<rect x="{left + si * 110}" y="{height - 14}" width="10" height="10" '
                     f'fill="{BAR_COLOURS[si % len(BAR_COLOURS)]}"/><text x="{left + si * 110 + 14}" '
                     f'y="{height - 5}" font-size="11">{html.escape(name)}</text>')
    return "".join(parts) + "</svg>"


def line_chart(title: str, rows: list[dict], keys: tuple[str, ...] = ("reward", "format", "correct"),
               width: int = 720, height: int = 220) -> str:
    """Per-step curves (values in [0, 1]) from an RL plot CSV's rows."""
    left, bottom, top = 40, 30, 30
    plot_w, plot_h = width - left - 10, height - bottom - top
    steps = [int(r["step"]) for r in rows]
    parts = [f'<svg class="plot" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>']
    if not steps:
        return "".join(parts) + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no training steps' \
                                '</text></svg>'
    span = max(1, max(steps) - min(steps))

    def xy(step: int, v: float) -> str:
        return f"{left + plot_w * (step - min(steps)) / span:.1f},{top + plot_h * (1 - max(0.0, min(v, 1.0))):.1f}"

    for tick in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{tick}</text>')
    legend_x = left
    for key in keys:
        pts = [xy(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        if pts:
            parts.append(f'<polyline fill="none" stroke-width="2" stroke="{LINE_COLOURS[key]}" '
                         f'points="{" ".join(pts)}"/>')
            parts.extend(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{LINE_COLOURS[key]}"/>'
                         for p in pts)
        parts.append(f'<text x="{legend_x}" y="{height - 6}" font-size="11" fill="{LINE_COLOURS[key]}">'
                     f'{key}</text>')
        legend_x += max(90, 7 * len(key) + 10)  # long names (per-round curves) get room
    return "".join(parts) + "</svg>"


def word_cloud(title: str, counts: list[tuple[str, int]], colour: str = "#1f5fbf", width: int = 360,
               height: int = 220, empty: str = "no words") -> str:
    """A word cloud as SVG: font size grows with the square root of a word's count; words are placed in count
    order along a spiral from the centre, each at the first point where its box overlaps no earlier word's.

    Monospace text, so a word's box is known without measuring fonts (0.6 em per character). Deterministic:
    the same counts give the same picture. Words that find no room are left out and counted in a caption."""
    top = 24
    parts = [f'<svg class="plot cloud" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>']
    counts = [(w, c) for w, c in counts if c > 0]
    if not counts:
        return "".join(parts) + (f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                                 f'{html.escape(empty)}</text></svg>')
    most = max(c for _, c in counts)
    placed: list[tuple[float, float, float, float]] = []
    cx, cy = width / 2, top + (height - top) / 2
    left_out = 0
    for word, c in counts:
        size = 10 + 26 * (c / most) ** 0.5
        w, h = 0.6 * size * len(word), size
        spot = None
        for k in range(1500):  # Archimedean spiral, wider across than down (the box is wide)
            a = 0.35 * k
            x, y = cx + 1.6 * a * _cos(a) - w / 2, cy + a * _sin(a) - h / 2
            if x < 2 or y < top or x + w > width - 2 or y + h > height - 2:
                continue
            if all(x + w <= px or px + pw <= x or y + h <= py or py + ph <= y for px, py, pw, ph in placed):
                spot = (x, y)
                break
        if spot is None:
            left_out += 1
            continue
        placed.append((spot[0], spot[1], w, h))
        parts.append(f'<text x="{spot[0]:.1f}" y="{spot[1] + 0.8 * h:.1f}" font-family="monospace" '
                     f'font-size="{size:.1f}" fill="{colour}" fill-opacity="{0.55 + 0.45 * c / most:.2f}">'
                     f'<title>{html.escape(word)}: {c}</title>{html.escape(word)}</text>')
    if left_out:
        parts.append(f'<text x="{width - 4}" y="{height - 4}" text-anchor="end" font-size="9" fill="#777">'
                     f'{left_out} more not shown</text>')
    return "".join(parts) + "</svg>"


def image_tag(img: Image.Image, size: int = 96) -> str:
    img = img.copy()
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="input">'


def examples_table(examples: list[dict]) -> str:
    """examples: {"benchmark", "question", "images": [PIL], "answer", "predictions": {model: (reply, extracted)}}"""
    rows = []
    for ex in examples:
        preds = "<br>".join(f"<b>{html.escape(m)}</b>: {html.escape(r[:120])} → {html.escape(str(e))}"
                            for m, (r, e) in ex["predictions"].items())
        rows.append(f"<tr><td>{html.escape(ex['benchmark'])}</td><td>{''.join(image_tag(i) for i in ex['images'])}</td>"
                    f"<td class='q'>{html.escape(ex['question'][:300])}</td><td>{html.escape(str(ex['answer']))}</td>"
                    f"<td class='q'>{preds}</td></tr>")
    return ("<table class='examples'><thead><tr><th>benchmark</th><th>image(s)</th><th>question</th>"
            "<th>answer</th><th>replies → extracted</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def page(title: str, sections: list[tuple[str, str]]) -> str:
    style = (f"body{{font-family:sans-serif;margin:24px;color:#222}}h1{{font-size:22px}}h2{{font-size:17px;"
             f"margin-top:28px}}table{{border-collapse:collapse;margin:8px 0}}th{{background:{HEADER_BG};"
             f"color:#fff;padding:5px 9px}}td{{border:1px solid #ccc;padding:4px 8px;text-align:right}}"
             f"td.q{{text-align:left;max-width:380px}}img{{margin:2px;border:1px solid #999}}"
             f"svg.plot{{display:block;margin:8px 0}}svg.cloud{{display:inline-block;margin:8px 12px 8px 0;"
             f"border:1px solid #eee}}")
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")
