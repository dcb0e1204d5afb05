"""dvc.yaml and the config schema agree: every declared param exists, every knob is declared somewhere,
and every stage's code reads only what it declares (enforced at run time by StageParams)."""

import re

import yaml

from viper.config import RUNTIME_SECTIONS, Params, leaf_keys, pipeline_stages, stage_declared_params

TRAIN_EVAL = ["models", "cold_start", "rl_stage1", "rl_stage2", "bench_data", "predictions", "benchmark"]
SYNTHESIS = ["seeds", "captions", "reconstructions", "refinements", "edit_plans", "edited_pairs", "viper10k"]
# Closed-loop rounds (rounds/dvc.yaml): foreach groups; most run round 0's script (round_captions: captions.py).
ROUNDS = ["round_seeds", "round_captions", "round_reconstructions", "round_refinements", "round_edit_plans",
          "round_edited_pairs", "round_viper10k", "round_train_set", "round_rl_stage1", "round_rl_stage2",
          "round_predictions", "round_metrics"]
OWN_SCRIPTS = {"round_seeds", "round_train_set", "round_metrics"}
# IVT (ivt/dvc.yaml): its own stages; ivt_eval is a foreach over the three models it scores.
IVT = ["ivt_data", "ivt_traces", "ivt_sft", "ivt_grpo", "ivt_eval", "ivt_report"]
# paper/dvc.yaml: analyses that `viper paper` runs in each experiment beside dvc.yaml
PAPER = ["analysis"]
STAGES = TRAIN_EVAL + SYNTHESIS
ALL = STAGES + ROUNDS + IVT + PAPER


def _covers(declared: str, leaf: str) -> bool:
    return leaf == declared or leaf.startswith(declared + ".")


def test_every_stage_exists_with_its_own_script(root):
    assert list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"]) == TRAIN_EVAL
    assert list(yaml.safe_load((root / "synthesis" / "dvc.yaml").read_text())["stages"]) == SYNTHESIS
    stages = pipeline_stages(root)
    for name, st in stages.items():
        assert f"stages/{name}.py" in st["deps"], name
        assert st["cmd"].startswith(f"python stages/{name}.py"), name
        assert (root / "stages" / f"{name}.py").exists()
    assert all("wdir" not in stages[name] for name in TRAIN_EVAL)
    assert all(stages[name]["wdir"] == ".." for name in SYNTHESIS)  # run from the root like the others


def test_round_groups_unroll_the_loop_tables_with_round_zero_scripts(root):
    spec = yaml.safe_load((root / "rounds" / "dvc.yaml").read_text())
    assert spec["vars"] == ["../params.yaml"] and list(spec["stages"]) == ROUNDS
    for name, group in spec["stages"].items():
        table = "measured" if name == "round_metrics" else "rounds"
        assert group["foreach"] == f"${{loop.unrolled.{table}}}", name
        do = group["do"]
        script = name if name in OWN_SCRIPTS else name.removeprefix("round_")
        assert do["cmd"].startswith(f"python stages/{script}.py") and f"stages/{script}.py" in do["deps"], name
        assert do["wdir"] == ".." and (root / "stages" / f"{script}.py").exists(), name
        outs = [o if isinstance(o, str) else next(iter(o)) for o in do.get("outs", [])]
        outs += [next(iter(m)) for m in do.get("metrics", [])]
        assert outs and all(o.startswith(("data/rounds/${key}/", "reports/rounds/${key}/")) for o in outs), name
        if "--vlm" in do["cmd"]:  # the synthesis VLM is the previous round's final model, a tracked dependency
            assert "${item.prev}/checkpoints/stage2" in do["deps"], name


def test_ivt_stages_run_their_own_scripts_from_the_root(root):
    spec = yaml.safe_load((root / "ivt" / "dvc.yaml").read_text())
    assert spec["vars"] == ["../params.yaml"] and list(spec["stages"]) == IVT
    assert list(spec["stages"]["ivt_eval"]["foreach"]) == ["base", "sft", "grpo"]
    for name, st in pipeline_stages(root, ivt=True).items():
        if name not in IVT:
            continue
        assert st["wdir"] == ".." and st["cmd"].startswith(f"python stages/{name}.py"), name
        assert f"stages/{name}.py" in st["deps"] and (root / "stages" / f"{name}.py").exists(), name
        # every output is IVT's own: nothing of the ViPER pipeline is written, only data/models is read
        outs = [o if isinstance(o, str) else next(iter(o)) for o in st.get("outs", [])]
        outs += [next(iter(m)) for m in st.get("metrics", [])]
        assert outs and all(o.startswith(("data/ivt/", "reports/ivt")) for o in outs), name


def test_training_reads_the_dataset_only_through_dataset_dir(root):
    """What lets a pulled Viper10K stand in for synthesis: no training or evaluation stage names
    data/viper10k or any synthesis output directly, so with dataset.dir elsewhere none is an ancestor."""
    synth_outs = {o if isinstance(o, str) else next(iter(o)) for name in SYNTHESIS
                  for o in pipeline_stages(root)[name]["outs"]}
    for name in TRAIN_EVAL:
        st = pipeline_stages(root)[name]
        for dep in st["deps"]:
            assert not any(dep == o or dep.startswith(o + "/") or o.startswith(dep + "/") for o in synth_outs), \
                (name, dep)
        if name in ("cold_start", "rl_stage1", "rl_stage2"):
            assert "--dataset ${dataset.dir}" in st["cmd"] and "dataset" in st["params"], name


def test_declared_params_exist_in_schema(root):
    leaves = leaf_keys(Params)
    for name in ALL:
        for key in stage_declared_params(name, root):
            assert any(_covers(key, leaf) for leaf in leaves), f"{name} declares unknown param {key}"


def test_every_schema_leaf_is_read_by_some_stage(root):
    """Except the runtime sections (how work runs, never what it computes), which no stage may declare, and
    loop.unrolled, which DVC itself reads (the foreach tables of rounds/dvc.yaml)."""
    declared = [k for name in ALL for k in stage_declared_params(name, root)]
    for leaf in leaf_keys(Params):
        if leaf == "loop.unrolled":
            continue
        runtime = leaf.split(".")[0] in RUNTIME_SECTIONS
        assert runtime != any(_covers(d, leaf) for d in declared), \
            f"param {leaf} is {'declared by a stage' if runtime else 'declared by no stage'}"


def test_stage_scripts_read_params_through_their_own_view(root):
    """Each script loads exactly its own stage's view, so StageParams enforces the declaration (round stages
    running round 0's scripts get their group's view through $DVC_STAGE: viper.config.running_stage)."""
    for name in STAGES + sorted(OWN_SCRIPTS) + IVT + PAPER:
        src = (root / "stages" / f"{name}.py").read_text()
        assert re.findall(r'load_stage_params\("(\w+)"\)', src) == [name], name
        assert "load_params(" not in src and "params.yaml" not in src, name
