"""The paper report from hand-made experiment results: every table and figure present, the paper's numbers
beside ours where its text gives them, and the deltas it reports computed from ours."""

import io
import json

import pytest
from PIL import Image

from viper import paper_report
from viper.eval.report import MMSTAR_CATEGORIES, PAPER_BENCHMARKS
from viper.paper import EXPERIMENTS, with_overrides


def scores(level: float) -> dict:
    s = {b: level for b in PAPER_BENCHMARKS}
    s.update({f"MMStar/{c}": level + i for i, c in enumerate(MMSTAR_CATEGORIES)})
    s["Overall"] = level
    return s


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (30, 10), "red").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def results():
    levels = {"two_stage": 50.0, "mixed": 45.0, "caption_only": 47.0, "operation_only": 48.0, "cold_start": 49.0}
    out = {n: {"commit": "0123456789abcdef", "benchmark": {"base": scores(40.0), "stage2": scores(v)},
               "curves": {"rl_stage1": [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.3 if n == "cold_start"
                                                                     else 0.4}], "rl_stage2": []}}
           for n, v in levels.items()}
    words = {"words": 10, "with_think": 2, "replies": 2, "top_words": [["dog", 3], ["zoom", 2]],
             "top_phrases": [], "operations": {"zoom in": 2, "scan": 0},
             "operations_per_1k_words": {"zoom in": 200.0, "scan": 0.0}}
    out["two_stage"]["words"] = {"start": {**words, "operations": {"zoom in": 0, "scan": 0}}, "stage1": words}
    focus = {"focus": 0.1, "peak_share": 0.3}
    out["two_stage"]["attention"] = [{"key": "k1", "base_focus": focus, "final_focus": {"focus": 0.2,
                                                                                          "peak_share": 0.4}}]
    out["two_stage"]["attention_png"] = {"k1": png()}
    return out


def test_markdown_has_each_table_and_figure_with_the_paper_beside(results):
    md = paper_report.markdown(results)
    for title in ("## Table 1", "## Table 2", "## Figure 2", "## Figure 3", "## Figure 4a", "## Figure 4b",
                  "## Figure 5"):
        assert title in md
    assert "| paper: Qwen-Viper-7B | 66.2 | 71.4 | 59.0 | 57.6 | 75.6 | 54.4 | 77.6 | 66.0 |" in md
    assert "| ours: Δ | +10.0 |" in md  # ViPER 50 vs base 40
    assert "| coarse perception | 50.0 | 45.0 | +5.0 |" in md  # Figure 3: two-stage minus mixed
    assert "| caption_only − both | -3.0 |" in md and "| operation_only − both | -2.0 |" in md
    assert "with cold start 0.300, without 0.400" in md


def test_html_has_each_section_and_its_images(results):
    page = paper_report.html_page(results)
    for title in ("Table 1", "Table 2", "Figure 2", "Figure 3", "Figure 4a", "Figure 4b", "Figure 5"):
        assert f"<h2>{title}" in page
    assert page.count('<svg class="plot"') == 4  # Figures 2, 3, 4a, 5
    assert page.count("data:image/png") == 1  # the attention panel


def test_summary_is_json_with_the_reported_deltas(results):
    s = json.loads(json.dumps(paper_report.summary(results)))
    assert s["figure3"]["math"]["delta"] == 5.0
    assert s["figure5"]["operation_only"]["Overall"]["delta_vs_both"] == -2.0
    assert s["figure2"] == {"with_cold_start": 0.3, "without_cold_start": 0.4}
    assert set(s["experiments"]) == set(EXPERIMENTS)


def test_overrides_change_only_their_keys():
    params = {"rl": {"stage_order": "two_stage", "beta": 0.0}, "cold_start": {"enabled": False}}
    out = with_overrides(params, EXPERIMENTS["cold_start"])
    assert out == {"rl": {"stage_order": "two_stage", "beta": 0.0}, "cold_start": {"enabled": True}}
    assert params["cold_start"]["enabled"] is False
