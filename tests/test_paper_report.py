"""The paper report from hand-made experiment results: every table and figure present, the paper's numbers
beside ours where its text gives them, and the deltas it reports computed from ours."""

import io
import json

import pytest
from PIL import Image

from viper import paper_report
from viper.eval.report import MMSTAR_CATEGORIES, PAPER_BENCHMARKS
from viper.paper import EXPERIMENTS, ROUNDS, PaperError, apply, experiments, queue, with_overrides


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
    assert page.count('<svg class="plot cloud"') == 2  # Figure 4a: a word cloud per model
    assert "<title>dog: 3</title>dog</text>" in page
    assert page.count("data:image/png") == 1  # the attention panel
    assert "Beyond the paper" not in page  # no rounds experiment here


def test_summary_is_json_with_the_reported_deltas(results):
    s = json.loads(json.dumps(paper_report.summary(results)))
    assert s["figure3"]["math"]["delta"] == 5.0
    assert s["figure5"]["operation_only"]["Overall"]["delta_vs_both"] == -2.0
    assert s["figure2"] == {"with_cold_start": 0.3, "without_cold_start": 0.4}
    assert set(s["experiments"]) == set(EXPERIMENTS)


def round_result(k: int, overall: float) -> dict:
    return {"round": k, "overall": overall, "overall_stage1": overall - 1, "judge_acceptance": 0.5,
            "refinements_per_caption": 2.0, "synthesis_vlm": {"path": "data" if k == 0 else f"data/rounds/{k}"},
            "rl": {"rl_stage1": {"reward_mean": 0.1}, "rl_stage2": {"reward_mean": 0.2}},
            "diversity": {"caption_distinct_1": 0.5, "caption_distinct_2": 0.6, "instruction_distinct_1": 0.5,
                          "instruction_distinct_2": 0.7, "caption_spread": 0.3, "caption_length": 12.0},
            "edit_categories": {"attribute": 2, "removal": 1}, "benchmarks": {"MMStar": overall}}


def test_rounds_experiment_is_reported_beside_the_paper(results):
    results[ROUNDS] = {**results["two_stage"], "rounds": [round_result(0, 30.0), round_result(1, 28.0)],
                       "benchmark": {**results["two_stage"]["benchmark"],
                                     "rounds": {"overall": [30.0, 28.0], "flags": ["round 1: Overall 28.00 < 30"]}}}
    md, page = paper_report.markdown(results), paper_report.html_page(results)
    assert "## Beyond the paper: closed-loop rounds" in md and "open question 1" in md
    assert "| 1 | 28 | 27 |" in md and "- round 1: Overall 28.00 < 30" in md
    assert "<h2>Beyond the paper: closed-loop rounds" in page and "<li>round 1: Overall 28.00 &lt; 30</li>" in page
    assert json.loads(json.dumps(paper_report.summary(results)))["rounds"]["overall"] == [30.0, 28.0]


def project_params(root) -> dict:
    import yaml
    return yaml.safe_load((root / "params.yaml").read_text())


def test_overrides_change_only_their_keys(root):
    params = project_params(root)
    out = with_overrides(params, EXPERIMENTS["cold_start"])
    changed = {k for k in params if params[k] != out[k]}
    assert changed <= {"cold_start", "loop"} and out["cold_start"]["enabled"] is True
    assert out["loop"]["rounds"] == 0 and out["loop"]["unrolled"] == {"rounds": {}, "measured": {}}
    assert params["cold_start"]["enabled"] is False  # a copy: the workspace's params are untouched


def test_rounds_experiment_exists_only_with_paper_rounds(root):
    params = project_params(root)
    assert set(experiments({**params, "paper": {"rounds": 0}})) == set(EXPERIMENTS)
    two = experiments({**params, "paper": {"rounds": 2}})
    assert two[ROUNDS]["loop.rounds"] == 2 and set(two) == {*EXPERIMENTS, ROUNDS}
    with pytest.raises(PaperError, match="paper.rounds > 0"):
        experiments({**params, "paper": {"rounds": 0}}, [ROUNDS])


def test_queued_params_file_is_what_the_plan_compares(root, tmp_path):
    """The rounds experiment's params.yaml is written through ruamel (DVC's -S cannot give loop.unrolled its
    digit-string keys): the file must read back as the plan's expectation and pass validation, comments kept."""
    import yaml

    from viper.config import edit_params, load_params

    path = tmp_path / "params.yaml"
    path.write_text((root / "params.yaml").read_text())
    overrides = experiments({**project_params(root), "paper": {"rounds": 2}})[ROUNDS]
    edit_params(path, lambda data: apply(data, overrides))
    written = yaml.safe_load(path.read_text())
    assert written == with_overrides(project_params(root), overrides)
    assert list(written["loop"]["unrolled"]["rounds"]) == ["1", "2"]
    assert load_params(path).loop.rounds == 2
    assert "# closed-loop rounds after round 0" in path.read_text()


def test_queue_puts_params_back_when_dvc_fails(root, tmp_path):
    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text())
    before = (tmp_path / "params.yaml").read_bytes()
    with pytest.raises(PaperError, match="dvc exp run --queue"):
        queue(tmp_path, "mixed", EXPERIMENTS["mixed"])  # not a DVC repository: queueing fails
    assert (tmp_path / "params.yaml").read_bytes() == before
