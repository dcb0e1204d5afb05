import json

import pytest

from viper.cli import main
from viper.store.cache import ENV_VAR, ItemCache


def test_cache_info_and_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    cache = ItemCache(tmp_path / "items.sqlite")
    cache.put_many("captions", {"a": b"x", "b": b"y"})
    cache.put_many("judge", {"c": b"z"})
    cache.close()
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "captions: 2 cached calls" in out and "judge: 1 cached calls" in out
    assert main(["cache", "clear"]) == 0
    assert not (tmp_path / "items.sqlite").exists()
    main(["cache", "info"])
    assert "cached calls" not in capsys.readouterr().out


def test_status_outside_a_repo_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 2
    assert "no dvc.yaml here" in capsys.readouterr().err


@pytest.mark.e2e
def test_status_of_a_partly_built_pipeline(tmp_path, monkeypatch, capsys):
    from viper.sandbox import make_repo, run

    repo = make_repo(tmp_path / "repo", {"seeds.n_synthetic": 6})
    run(["dvc", "repro", "synthesis/dvc.yaml:captions"], repo)
    monkeypatch.chdir(repo)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert main(["status", "--json"]) == 0
    rows = {r["stage"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["captions"]["state"] == "done" and rows["captions"]["in"] == 6
    assert rows["captions"]["cache_misses"] >= 6 and rows["captions"]["cached_calls"] >= 6
    assert rows["refinements"]["state"] == "new" and rows["benchmark"]["state"] == "new"

    # while a driver streams through a step (here: this process), status shows how far it got
    import os

    from viper.synth.stream import PROGRESS_DIR

    PROGRESS_DIR.mkdir(exist_ok=True)  # the captions run left it (empty)
    (PROGRESS_DIR / "judge.json").write_text(json.dumps({"done": 64, "total": 200, "pid": os.getpid(),
                                                         "host": os.uname().nodename}))
    assert main(["status", "--json"]) == 0
    rows = {r["stage"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["viper10k"]["state"] == "running judge 64/200" and rows["captions"]["state"] == "done"


def test_verify_reports_counts_or_names_the_bad_shard(tmp_path, capsys):
    from tests.store.viper10k_data import make_dataset

    root = make_dataset(tmp_path / "v", n_caption=4, n_operation=2)
    assert main(["verify", str(root)]) == 0
    assert "OK {'caption_refining': 4, 'visual_operation': 2}" in capsys.readouterr().out
    (root / "visual_operation" / "shard-000000.tar").write_bytes(b"")
    assert main(["verify", str(root)]) == 1
    err = capsys.readouterr().err
    assert "visual_operation/shard-000000.tar is corrupt" in err and "Traceback" not in err


def test_publish_and_pull_outside_a_repository_say_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "--license", "MIT"]) == 2
    assert main(["pull", "/nowhere"]) == 2
    assert capsys.readouterr().err.count("no dvc.yaml here") == 2


def test_publish_and_pull_refuse_paths_that_leave_their_directories(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert main(["publish", "--license", "MIT", "--name", "../elsewhere"]) == 1
    assert main(["pull", "/nowhere", "--out", "../elsewhere"]) == 1
    err = capsys.readouterr().err
    assert "release name '../elsewhere'" in err and "--out '../elsewhere' must be a directory inside" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml"]


def test_paper_without_finished_experiments_names_what_is_missing(root, tmp_path, monkeypatch, capsys):
    """--no-run renders only from finished experiments: none here. With --only (a partial run) the missing ones are
    listed and it is not a failure; an invalid params file stops before anything is queued."""
    import subprocess

    for f in ("params.yaml", "dvc.yaml"):
        (tmp_path / f).write_text((root / f).read_text())
    for cmd in (["init", "-q"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "p", "--allow-empty"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    assert main(["paper", "--no-run"]) == 1
    assert "no finished experiment for paper-two_stage" in capsys.readouterr().err
    assert main(["paper", "--no-run", "--only", "mixed"]) == 0
    out = capsys.readouterr().out
    assert "not finished yet: two_stage, mixed, caption_only, operation_only, cold_start, rounds" in out
    assert main(["paper", "--only", "nonsense"]) == 2 and "unknown experiments" in capsys.readouterr().err
    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text().replace("rounds: 1 ", "rounds: -1 "))
    assert main(["paper", "--no-run"]) == 1 and "paper.rounds" in capsys.readouterr().err
