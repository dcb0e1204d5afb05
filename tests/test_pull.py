"""`viper pull --url`: a release served as plain files (here a directory) is imported with real
`dvc import-url`, verified, and made what training reads; a damaged one is refused, named."""

import json

import pytest
import yaml

from tests.store.viper10k_data import make_dataset
from viper.publish import public_url
from viper.sandbox import make_repo, run


def test_pull_from_a_plain_directory_imports_verifies_and_sets_dataset_dir(tmp_path):
    source = make_dataset(tmp_path / "served" / "viper10k", n_caption=3, n_operation=2)
    repo = make_repo(tmp_path / "repo")
    out = run(["viper", "pull", "--url", str(source)], repo)
    assert "pulled Viper10K into data/pulled/viper10k: {'caption_refining': 3, 'visual_operation': 2}, verified" in out
    dvc_file = yaml.safe_load((repo / "data/pulled/viper10k.dvc").read_text())
    assert dvc_file["deps"][0]["path"] == str(source)
    assert yaml.safe_load((repo / "params.yaml").read_text())["dataset"]["dir"] == "data/pulled/viper10k"
    assert json.loads((repo / "data/pulled/viper10k/manifest.json").read_text()) == \
        json.loads((source / "manifest.json").read_text())


def test_pull_of_a_damaged_release_fails_naming_the_shard(tmp_path):
    source = make_dataset(tmp_path / "served" / "viper10k")
    shard = source / "caption_refining" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:-1024])
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(AssertionError) as err:
        run(["viper", "pull", "--url", str(source)], repo)
    assert "viper pull: Viper10K at" in str(err.value)
    assert "caption_refining/shard-000001.tar is corrupt" in str(err.value) and "Traceback" not in str(err.value)
    assert yaml.safe_load((repo / "params.yaml").read_text())["dataset"]["dir"] == "data/viper10k"  # unchanged
    assert "left in data/pulled/viper10k for inspection" in str(err.value)

    good = make_dataset(tmp_path / "mirror" / "viper10k", n_caption=2, n_operation=1)
    out = run(["viper", "pull", "--url", str(good)], repo)  # another source replaces the failed import
    assert "{'caption_refining': 2, 'visual_operation': 1}, verified" in out
    assert yaml.safe_load((repo / "data/pulled/viper10k.dvc").read_text())["deps"][0]["path"] == str(good)
    assert yaml.safe_load((repo / "params.yaml").read_text())["dataset"]["dir"] == "data/pulled/viper10k"


def test_published_cards_never_carry_credentials():
    assert public_url("https://user:ghp_secret@github.com/o/r.git") == "https://github.com/o/r.git"
    assert public_url("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert public_url("/srv/git/viper") == "/srv/git/viper"
