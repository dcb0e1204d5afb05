
from viper.eval.report import PAPER_BENCHMARKS, PAPER_RESULTS, render_markdown
from viper.eval.score import overall


def test_paper_overall_matches_its_benchmarks():
    for model, row in PAPER_RESULTS.items():
        assert round(overall({b: row[b] for b in PAPER_BENCHMARKS}), 1) == row["Overall"], model
    assert PAPER_RESULTS["Qwen-Viper-7B"]["MMStar/fine-grained perception"] == 61.6
    assert PAPER_RESULTS["Qwen2.5-VL-3B"]["MMStar/science & technology"] == 37.2


def test_render_markdown_contains_numbers_deltas_and_paper():
    results = {"base": {"MMStar": 40.0, "HallusionBench": 30.25},
               "stage1": {"MMStar": 42.5, "HallusionBench": 30.0},
               "stage2": {"MMStar": 45.04}}
    md = render_markdown(results, ["MMStar", "HallusionBench"], ["tiny synthetic benchmark"])
    lines = md.splitlines()
    assert "| model | MMStar | HallusionBench | Overall |" in lines
    assert "| base | 40.0 | 30.2 | 35.1 |" in lines          # 30.25 -> 30.2 (binary float), mean 35.125
    assert "| stage1 | 42.5 | 30.0 | 36.2 |" in lines
    assert "| stage2 | 45.0 | – | – |" in lines               # no Overall over a partial row
    assert "| Δ stage1 − base | +2.5 | -0.2 | +1.1 |" in lines
    assert "| Δ stage2 − base | +5.0 | – | – |" in lines
    assert "| paper: Qwen2.5-VL-7B | 63.9 | 52.9 | 58.4 |" in lines
    assert "| paper: Δ Qwen-Viper-7B − Qwen2.5-VL-7B | +2.3 | +1.5 | +1.9 |" in lines
    assert "| ours: base | 40.0 | 30.2 | 35.1 |" in lines
    assert "paper's reported numbers" in md
    assert "- tiny synthetic benchmark" in lines
    assert lines.index("| base | 40.0 | 30.2 | 35.1 |") < lines.index("| stage1 | 42.5 | 30.0 | 36.2 |")


def test_render_markdown_unknown_benchmark_has_no_paper_number():
    md = render_markdown({"base": {"tiny-MMStar": 25.0}}, ["tiny-MMStar"], [])
    assert "| paper: Qwen2.5-VL-3B | – | – |" in md.splitlines()
    assert "## Notes" not in md
