"""The Viper10K format: what the `viper10k` stage writes, what training reads, what `viper publish` ships.

A Viper10K directory (built in data/viper10k, or a pulled release):

    manifest.json            format, field schema, counts and sha256 of every shard, models, params
                             (+ a `release` block for published copies: git revision, license, ...)
    README.md                the dataset card, rendered from the manifest
    caption_refining/*.tar   webdataset shards: <key>.png + <key>.json
    visual_operation/*.tar   <key>.src.png + <key>.edited.png + <key>.json

Reading trusts nothing: `Viper10K(path)` checks every shard against the manifest's sha256 before any
sample is used (a missing, corrupt or unlisted shard fails, named); samples come through
`viper.store.io.read_shard`, which refuses links and path-like member names and never extracts; and
every record is checked against its subset's schema. Built and pulled data go through the same code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import jsonschema

from viper.prompts.templates import EDIT_CATEGORIES
from viper.store.io import ShardError, read_shard, sha256_file

FORMAT = "viper10k/1"
SUBSETS = ("caption_refining", "visual_operation")

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}

# Per subset: the image members, and the JSON Schema of the `json` member. The card is rendered from this,
# and reading validates against it, so the documented schema is the enforced one.
SCHEMA: dict[str, dict] = {
    "caption_refining": {
        "images": {"png": "the seed image the caption describes (RGB PNG)"},
        "json": {
            "type": "object", "additionalProperties": False, "required": ["id", "caption", "refinements"],
            "properties": {
                "id": {**_ID, "description": "seed image id: content hash of its normalised pixels; the sample key"},
                "caption": {"type": "string", "description": "the VLM's own detailed caption of the image"},
                "refinements": {"type": "array", "items": {"type": "string"},
                                "description": "flaws of the caption found against its reconstruction (RL stage-1 "
                                               "ground truth); empty = the caption is faithful"},
            },
        },
    },
    "visual_operation": {
        "images": {"src.png": "the original seed image (RGB PNG)",
                   "edited.png": "the image after the edit (RGB PNG)"},
        "json": {
            "type": "object", "additionalProperties": False,
            "required": ["id", "edit_id", "category", "entity", "instruction"],
            "properties": {
                "id": {**_ID, "description": "id of the original seed image"},
                "edit_id": {**_ID, "description": "id of the edit; the sample key"},
                "category": {"type": "string", "enum": list(EDIT_CATEGORIES), "description": "kind of edit"},
                "entity": {"type": "string", "description": "what the edit changes"},
                "instruction": {"type": "string", "minLength": 1,
                                "description": "the edit instruction (RL stage-2 ground truth)"},
            },
        },
    },
}
KEY_FIELD = {"caption_refining": "id", "visual_operation": "edit_id"}

_COUNT = {"type": "integer", "minimum": 0}  # JSON Schema integers exclude booleans
_SUBSET = {"type": "object", "required": ["count", "shards"], "properties": {
    "count": _COUNT,
    "shards": {"type": "array", "items": {
        "type": "object", "required": ["file", "sha256", "count"], "properties": {
            "file": {"type": "string", "pattern": r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.tar\Z"},  # a plain name, no path
            "sha256": {"type": "string", "pattern": r"^[0-9a-f]{64}\Z"},
            "count": _COUNT}}}}}
# What read_manifest requires of manifest.json beyond its format string (the rest is informational).
MANIFEST_SCHEMA = {"type": "object", "required": ["format", "subsets"], "properties": {
    "subsets": {"type": "object", "required": list(SUBSETS), "properties": {s: _SUBSET for s in SUBSETS}},
    "release": {"type": "object", "required": ["git_revision", "license"],
                "properties": {"git_revision": {"type": "string"}, "license": {"type": "string"}}}}}


class DatasetError(Exception):
    """A Viper10K directory that cannot be used as it is. The message names the file and what to do."""


def build_manifest(entries: dict[str, list[dict]], models: dict, params: dict) -> dict:
    """The manifest the `viper10k` stage writes: no timestamps or revisions, so equal data give equal bytes."""
    return {"name": "Viper10K", "format": FORMAT, "schema": SCHEMA, "models": models, "params": params,
            "subsets": {name: {"count": sum(e["count"] for e in es), "shards": es} for name, es in entries.items()}}


def _fail(root: Path, what: str, advice: str) -> DatasetError:
    return DatasetError(f"Viper10K at {root}: {what}. {advice}")


REFETCH = ("Get it again from where it came from (`dvc repro synthesis/dvc.yaml` for a built dataset, "
           "`dvc update`/`dvc pull` for an imported one) and check it with `viper verify`")


def read_manifest(root: str | Path) -> dict:
    root = Path(root)
    path = root / "manifest.json"
    if not root.is_dir():
        raise _fail(root, "no such directory", "Build it (`dvc repro synthesis/dvc.yaml`) or pull a release "
                    "(`viper pull`), and point `dataset.dir` at it")
    if not path.is_file():
        raise _fail(root, "manifest.json is missing", "This is not a Viper10K directory; " + REFETCH)
    try:
        man = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise _fail(root, f"manifest.json is not valid JSON ({err})", REFETCH) from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        got = man.get("format") if isinstance(man, dict) else type(man).__name__
        raise _fail(root, f"manifest.json has format {got!r}, this code reads {FORMAT!r}", REFETCH)
    try:
        jsonschema.validate(man, MANIFEST_SCHEMA)
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "<manifest>"
        raise _fail(root, f"manifest.json is malformed at {where}: {err.message}", REFETCH) from None
    for subset in SUBSETS:
        sub = man["subsets"][subset]
        files = [e["file"] for e in sub["shards"]]
        if len(set(files)) != len(files):
            raise _fail(root, f"manifest.json lists a shard of {subset!r} twice", REFETCH)
        if sub["count"] != sum(e["count"] for e in sub["shards"]):
            raise _fail(root, f"manifest.json says {subset!r} has {sub['count']} samples but its shards add up "
                        f"to {sum(e['count'] for e in sub['shards'])}", REFETCH)
    return man


def verify_checksums(root: str | Path, man: dict) -> None:
    """Every listed shard exists with the listed sha256, and no unlisted shard sits beside them."""
    root = Path(root)
    for subset in SUBSETS:
        listed = man["subsets"][subset]["shards"]
        for e in listed:
            path = root / subset / e["file"]
            if not path.is_file():
                raise _fail(root, f"shard {subset}/{e['file']} listed in manifest.json is missing", REFETCH)
            digest = sha256_file(path)
            if digest != e["sha256"]:
                raise _fail(root, f"shard {subset}/{e['file']} is corrupt: sha256 {digest[:16]}… but "
                            f"manifest.json says {e['sha256'][:16]}… (truncated, changed or damaged in transfer)",
                            REFETCH)
        extra = sorted({p.name for p in (root / subset).glob("*.tar")} - {e["file"] for e in listed})
        if extra:
            raise _fail(root, f"shard(s) {', '.join(f'{subset}/{f}' for f in extra)} are not in manifest.json",
                        "Remove them, or rebuild/re-pull the dataset so the manifest lists what is there")


def check_record(subset: str, sample: dict) -> None:
    """A sample has exactly its subset's members, decodable images and a schema-valid record."""
    spec = SCHEMA[subset]
    want = {"json", *spec["images"]}
    got = set(sample) - {"__key__"}
    if got != want:
        raise ShardError(f"sample {sample['__key__']!r} has members {sorted(got)}, expected {sorted(want)}")
    for ext in spec["images"]:
        if not hasattr(sample[ext], "mode"):
            raise ShardError(f"sample {sample['__key__']!r}: {ext} is not an image")
    try:
        jsonschema.validate(sample["json"], spec["json"])
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "<record>"
        raise ShardError(f"sample {sample['__key__']!r}: record field {where}: {err.message}") from None
    if sample["json"][KEY_FIELD[subset]] != sample["__key__"]:
        raise ShardError(f"sample {sample['__key__']!r}: record {KEY_FIELD[subset]} is "
                         f"{sample['json'][KEY_FIELD[subset]]!r}, not the sample key")


class Viper10K:
    """A verified Viper10K directory. Construction checks every shard's checksum; iteration checks the rest."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        verify_checksums(self.root, self.manifest)

    def counts(self) -> dict[str, int]:
        return {s: self.manifest["subsets"][s]["count"] for s in SUBSETS}

    def samples(self, subset: str) -> Iterator[dict]:
        """The subset's samples in shard order, each member- and schema-checked."""
        keys: set[str] = set()
        for e in self.manifest["subsets"][subset]["shards"]:
            shard, n = self.root / subset / e["file"], 0
            try:
                for sample in read_shard(shard):  # its errors name the shard already
                    try:
                        check_record(subset, sample)
                        if sample["__key__"] in keys:
                            raise ShardError(f"sample {sample['__key__']!r} also appears in an earlier shard")
                        keys.add(sample["__key__"])
                    except ShardError as err:
                        raise ShardError(f"{shard}: {err}") from None
                    n += 1
                    yield sample
            except ShardError as err:
                raise _fail(self.root, str(err), "The shard is unusable (and unsafe to extract with other "
                            "tools); " + REFETCH) from None
            if n != e["count"]:
                raise _fail(self.root, f"{shard} holds {n} samples, manifest.json says {e['count']}", REFETCH)

    def check_all(self) -> dict[str, int]:
        """Read every sample of both subsets (what `viper verify` and `viper publish` run); returns counts."""
        return {s: sum(1 for _ in self.samples(s)) for s in SUBSETS}


def card(man: dict) -> str:
    """The dataset card (README.md), rendered from a build or release manifest."""
    rel = man.get("release") or {}
    lines = [f"# {man['name']}", "",
             "ViPER training data a vision-language model synthesised about its own perception: its captions "
             "of seed images, critiqued against text-to-image reconstructions of those captions "
             "(`caption_refining`), and image pairs with the edit instruction that links them "
             "(`visual_operation`), filtered by CLIP similarity and a VLM judge.", ""]
    if rel:
        lines += [f"- License: {rel['license']}",
                  f"- Built at git revision `{rel['git_revision']}`" + (f" of {rel['repository']}" if rel.get("repository") else ""),
                  f"- Format: `{man['format']}`", ""]
    else:
        lines += [f"- Format: `{man['format']}`",
                  "- License and git revision: added by `viper publish` (this copy was built locally)", ""]
    lines += ["## Counts", "", "| subset | samples | shards |", "|---|---|---|"]
    lines += [f"| {s} | {man['subsets'][s]['count']} | {len(man['subsets'][s]['shards'])} |" for s in SUBSETS]
    lines += ["", "## Fields", "",
              "Each sample is a group of tar members `<key>.<ext>` (webdataset layout).", ""]
    for s in SUBSETS:
        lines += [f"### {s}", "", "| member / field | type | meaning |", "|---|---|---|"]
        lines += [f"| `{ext}` | image | {desc} |" for ext, desc in man["schema"][s]["images"].items()]
        for field, spec in man["schema"][s]["json"]["properties"].items():
            typ = spec["type"] + (f" of {spec['items']['type']}" if "items" in spec else "")
            typ += f" (one of {', '.join(spec['enum'])})" if "enum" in spec else ""
            lines.append(f"| `json.{field}` | {typ} | {spec['description']} |")
        lines.append("")
    lines += ["## Checksums (sha256)", "", "| shard | samples | sha256 |", "|---|---|---|"]
    lines += [f"| {s}/{e['file']} | {e['count']} | `{e['sha256']}` |"
              for s in SUBSETS for e in man["subsets"][s]["shards"]]
    lines += ["", "## Models", "", "| role | id | revision |", "|---|---|---|"]
    # a closed-loop round's synthesis VLM is a checkpoint: its path says which round's
    lines += [f"| {role} | `{m.get('path', m['id'])}` | `{m['revision']}` |" for role, m in sorted(man["models"].items())]
    params = rel.get("stage_params") or man["params"]
    lines += ["", "## Params", "",
              "As recorded in dvc.lock for each synthesis stage:" if rel.get("stage_params") else
              "Of the `viper10k` stage (a published copy lists every synthesis stage's params):",
              "", "```json", json.dumps(params, indent=2, sort_keys=True), "```", "",
              "## Loading", "", "```python",
              "from viper.store.viper10k import Viper10K   # checks checksums, members and records",
              "for sample in Viper10K('path/to/viper10k').samples('caption_refining'): ...", "```", "",
              "It also loads with Hugging Face `datasets` "
              "(`load_dataset('webdataset', data_files={'train': 'caption_refining/*.tar'})`) and with "
              "`webdataset.WebDataset`; run `viper verify <dir>` first, as those do not check checksums.", ""]
    return "\n".join(lines)
