"""The HTML report renders in headless Chromium with its table and plots visible; md and JSON agree."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
from PIL import Image

from viper.eval import html as H
from viper.eval.generate import make_tiny_mmstar
from viper.eval.registry import BENCHMARKS
from viper.eval.run import html_report, markdown_report, metrics_json
from viper.eval.tsv import load_tsv

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def scored(tmp_path):
    make_tiny_mmstar(tmp_path / "MMStar.tsv", rows_per_category=2, seed=0)
    df = load_tsv(tmp_path / "MMStar.tsv")
    frames = {"MMStar": df}
    preds = {"base": {str(i): "I am not sure" for i in df["index"]},
             "stage2": {str(i): f"The answer is {a}" if k % 2 else "A" for k, (i, a) in
                        enumerate(zip(df["index"], df["answer"]))}}
    details = {(m, "MMStar"): BENCHMARKS["MMStar"].score(df, p) for m, p in preds.items()}
    results = {m: {"MMStar": details[(m, "MMStar")]["score"],
                   **{f"MMStar/{c}": v for c, v in details[(m, "MMStar")]["per_category"].items()},
                   "Overall": details[(m, "MMStar")]["score"]} for m in preds}
    return results, frames, details


def test_markdown_holds_the_metrics_numbers(tmp_path):
    results, frames, _ = scored(tmp_path)
    md = markdown_report(results, list(frames), ["a note"])
    metrics = metrics_json(results)
    for model in ("base", "stage2"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {model} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{metrics[model]['MMStar']:.1f}" and cells[2] == f"{metrics[model]['Overall']:.1f}"
    assert metrics["delta_stage2_vs_base"] == round(results["stage2"]["Overall"] - results["base"]["Overall"], 4)
    assert "MMStar per category" in md and "paper: Qwen-Viper-7B" in md


def colour_pixels(img: np.ndarray, hex_colour: str, tol: int = 12) -> int:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img[..., :3].astype(int) - rgb).max(axis=-1) <= tol).sum())


def test_html_report_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed for this test: `make test` installs Debian's chromium"
    results, frames, details = scored(tmp_path)
    plots = {"rl_stage1": [{"step": 1, "reward": 0.1, "format": 0.0, "correct": 0.11},
                           {"step": 2, "reward": 0.3, "format": 0.5, "correct": 0.29}]}
    page = html_report(results, frames, details, ["base", "stage2"], plots, ["a note"])
    assert page.count("<svg") == 2 and "data:image/png;base64," in page
    (tmp_path / "report.html").write_text(page)
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1000,1600", f"--screenshot={shot}", f"file://{tmp_path / 'report.html'}"],
                   check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert colour_pixels(img, H.HEADER_BG) > 2000        # the tables' header rows are on screen
    assert colour_pixels(img, H.BAR_COLOURS[1]) > 200    # stage2's bars in the per-benchmark plot
    assert colour_pixels(img, H.LINE_COLOURS["reward"]) > 200  # base bars + the reward curve


def test_bar_chart_marks_zero_scores_visibly():
    svg = H.bar_chart("t", ["A", "B"], {"m": [0.0, None]})
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" fill="#', svg)]
    assert heights[:2] == [2.0, 0.0]  # a zero keeps a sliver; a missing value draws nothing


def test_word_cloud_places_words_without_overlap_largest_for_the_most_frequent():
    counts = [(f"word{i}", 60 - 2 * i) for i in range(30)]
    svg = H.word_cloud("t", counts)
    placed = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" font-family="monospace" font-size="([\d.]+)"[^>]*>'
                        r'<title>(\w+): (\d+)</title>', svg)
    shown = len(placed)
    left_out = int(re.search(r"(\d+) more not shown", svg).group(1)) if "not shown" in svg else 0
    assert shown >= 10 and shown + left_out == 30
    boxes = []
    for x, y, size, word, _ in placed:  # back from the baseline to the box word_cloud reserved
        size = float(size)
        boxes.append((float(x), float(y) - 0.8 * size, 0.6 * size * len(word), size))
    for i, (x, y, w, h) in enumerate(boxes):
        assert 0 <= x and x + w <= 360 and y + h <= 220
        for px, py, pw, ph in boxes[:i]:
            assert x + w <= px + 0.01 or px + pw <= x + 0.01 or y + h <= py + 0.01 or py + ph <= y + 0.01
    sizes = {word: float(size) for _, _, size, word, _ in placed}
    assert sizes["word0"] == max(sizes.values()) and sizes["word0"] > sizes[placed[-1][3]]
    assert H.word_cloud("t", counts) == svg  # deterministic
    assert "no words" in H.word_cloud("t", [])
