"""`viper paper` with real DVC (acceptance of the paper-experiments issue), on a copy of the session's one build.

One command queues and runs the paper's five experiments and writes reports/paper.{md,html,json}; run again it
runs nothing. Each experiment reruns only the stages its params reach (the checks of which stages an RL schedule
or the cold start reruns live here, on these runs). The page renders in headless Chromium with each table and
figure and their images. RL is shortened (2 + 2 steps) and Figure 4 uses two inputs, to keep the module at about
six minutes. The rounds experiment (paper.rounds > 0) is left out here: it adds a whole round of synthesis
(~4.5 min), which tests/test_rounds_e2e.py already runs through `dvc exp run`; its params file and report are
checked in tests/test_paper_report.py.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from viper.eval import html as H
from viper.paper import EXPERIMENTS, PREFIX, finished
from viper.sandbox import copy_repo, ran_stages, run, set_params

pytestmark = pytest.mark.e2e

SHORT = {"rl.stage1_steps": 2, "rl.stage2_steps": 2, "analysis.examples": 2, "analysis.attention_examples": 2,
         "paper.rounds": 0}
SECTIONS = ("Table 1", "Table 2", "Figure 2", "Figure 3", "Figure 4a", "Figure 4b", "Figure 5")
# what each queued experiment must rerun on top of the committed build (the workspace's RL is 2 + 2 steps, the
# build's 60 + 20, so the recipe retrains too)
RERUN = {"rl_stage1", "rl_stage2", "predictions", "benchmark"}
RAN = {"two_stage": RERUN | {"analysis"}, "mixed": RERUN, "caption_only": RERUN, "operation_only": RERUN,
       "cold_start": RERUN | {"cold_start"}}


@pytest.fixture(scope="module")
def paper(built_repo, tmp_path_factory) -> dict:
    r = copy_repo(built_repo["path"], tmp_path_factory.mktemp("paper") / "repo")
    set_params(r, SHORT)
    run(["git", "add", "-A"], r)
    run(["git", "commit", "-qm", "first build, shorter RL"], r)
    params = (r / "params.yaml").read_bytes()
    first = run(["viper", "paper"], r)
    shas = finished(r)
    logs = {n: run(["dvc", "queue", "logs", PREFIX + n], r) for n in shas}
    second = run(["viper", "paper"], r)
    return {"path": r, "params": params, "first": first, "second": second, "shas": shas, "logs": logs}


def exp_params(paper: dict, name: str) -> dict:
    return yaml.safe_load(run(["git", "show", f"{paper['shas'][name]}:params.yaml"], paper["path"]))


def test_one_command_runs_every_experiment(paper):
    assert set(paper["shas"]) == set(EXPERIMENTS)
    assert f"ran 5 experiment(s): {', '.join(EXPERIMENTS)}" in paper["first"]
    assert "wrote reports/paper.md, reports/paper.html, reports/paper.json" in paper["first"]
    shown = run(["dvc", "exp", "show", "--md", "--no-pager"], paper["path"])
    assert all(f"[{PREFIX}{n}]" in shown for n in paper["shas"]) and "stage2.Overall" in shown


def test_each_experiment_reruns_only_what_its_params_reach(paper):
    for name, stages in RAN.items():
        assert ran_stages(paper["logs"][name]) == stages, name  # synthesis, bench_data, models: never


def test_each_experiment_ran_its_own_params(paper):
    for name, overrides in EXPERIMENTS.items():
        p = exp_params(paper, name)
        assert p["rl"]["stage_order"] == overrides["rl.stage_order"], name
        assert p["cold_start"]["enabled"] is overrides["cold_start.enabled"] and p["loop"]["rounds"] == 0, name

    def metrics(name: str, stage: str) -> dict:
        return json.loads(run(["git", "show", f"{paper['shas'][name]}:reports/metrics/{stage}.json"], paper["path"]))

    # the blend and each single-task ablation train once, with both stages' budget (2 + 2); the recipe twice
    for name in ("mixed", "caption_only", "operation_only"):
        stage1, stage2 = metrics(name, "rl_stage1"), metrics(name, "rl_stage2")
        assert (stage1["schedule"], stage1["steps"], stage2["steps"]) == (name, 4, 0), name
    assert {k for k in metrics("mixed", "rl_stage1") if k.startswith("examples_")} == {
        "examples_caption_refining", "examples_visual_operation"}
    assert metrics("two_stage", "rl_stage1")["steps"] == 2 and metrics("two_stage", "rl_stage2")["steps"] == 2
    warm = metrics("cold_start", "cold_start")
    assert warm["enabled"] and warm["steps"] == 2 and not metrics("two_stage", "cold_start")["enabled"]


def test_experiments_share_the_workspace_item_cache(paper):
    """mixed retrains both RL stages, so its predictions stage reruns; the base model's replies were cached by the
    first build in the workspace's .viper_cache/, which the queued run must have reused."""
    m = json.loads(run(["git", "show", f"{paper['shas']['mixed']}:reports/metrics/predictions.json"], paper["path"]))
    assert m["base"]["cache_misses"] == 0 and m["base"]["cache_hits"] == m["base"]["rows"] > 0
    assert m["stage1"]["cache_misses"] > 0  # its own model: computed (stage 2 is stage 1 here: mixed trains once)


def test_workspace_params_are_put_back(paper):
    r = paper["path"]
    assert (r / "params.yaml").read_bytes() == paper["params"]
    assert run(["git", "status", "--porcelain", "params.yaml", "dvc.lock"], r) == ""


def test_second_run_runs_nothing(paper):
    assert "ran 0 experiment(s): none (all done for this commit)" in paper["second"]
    assert all(f"paper-{n}: done for this commit and these params, not rerun" in paper["second"]
               for n in paper["shas"])
    assert finished(paper["path"]) == paper["shas"]


def test_report_numbers_come_from_the_experiments(paper):
    r = paper["path"]
    summary = json.loads((r / "reports" / "paper.json").read_text())
    assert {n: e["commit"] for n, e in summary["experiments"].items()} == paper["shas"]
    bench = json.loads(run(["git", "show", f"{paper['shas']['two_stage']}:reports/benchmark.json"], r))
    assert summary["table1"]["viper"]["Overall"] == bench["stage2"]["Overall"]
    assert "rounds" not in summary  # paper.rounds 0: no rounds experiment
    md = (r / "reports" / "paper.md").read_text()
    assert "| paper: Qwen-Viper-7B | 66.2 |" in md
    assert f"| ours: ViPER (two-stage) | {bench['stage2']['MMStar']:.1f} |" in md


def test_page_renders_every_section_with_its_images(paper, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed for this test: `make test` installs Debian's chromium"
    page = (paper["path"] / "reports" / "paper.html").read_text()
    heads = re.findall(r"<h2>(.*?)</h2>", page)
    for title in SECTIONS:
        assert any(h.startswith(title) for h in heads), title
    # every embedded image decodes; Figure 4b has one panel (image, base, final) per attention input
    pngs = [Image.open(io.BytesIO(base64.b64decode(b))) for b in re.findall(r"data:image/png;base64,([^\"']+)", page)]
    assert len(pngs) == SHORT["analysis.attention_examples"] and all(p.size[0] > 2 * p.size[1] for p in pngs)
    assert page.count('<svg class="plot cloud"') == 2
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}/p",
                          "--dump-dom", f"file://{paper['path'] / 'reports' / 'paper.html'}"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert all(f"<h2>{t}" in dom for t in SECTIONS)  # Chromium parsed the page into these sections
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path}/p", "--window-size=1100,9000", f"--screenshot={shot}",
                    f"file://{paper['path'] / 'reports' / 'paper.html'}"], check=True, capture_output=True,
                   timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB"))

    def pixels(hex_colour: str, tol: int = 12) -> int:
        rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return int((np.abs(img.astype(int) - rgb).max(axis=-1) <= tol).sum())

    assert pixels(H.HEADER_BG) > 5000  # the tables' header rows
    assert pixels(H.LINE_COLOURS["with_cold_start"]) > 100  # Figure 2's cold-start curve
    assert pixels(H.BAR_COLOURS[1]) > 200  # Figures 3 and 5: the second series' bars
