"""Prompt builders and exact-matching scorers for the non-MMStar benchmarks of the paper.

MMStar, RealWorldQA and BLINK use `prompts.mc_prompt` + `score.score_mc`; this module covers
MME-RealWorld, HallusionBench, CRPE (relation) and Mantis-Eval, each following
../shared/reference/eval-scoring.md, including the reference implementations' quirks, because the
paper's numbers were scored that way. Where the reference is silent or crashes, the choice made here
is stated next to the code.

Every scorer takes the benchmark frame and {index: reply} and returns a dict with at least
"score" (percent, unrounded), "n" (rows) and "rows" (one record per row: index, prediction,
extracted, answer, hit), and raises ValueError when predictions and rows do not match one to one.
Only the prompt *text* is built here; the caller passes the row's images before it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Callable, Hashable, Mapping

import pandas as pd

from viper.eval.prompts import row_options
from viper.eval.score import _missing, _plain, align_predictions as _aligned

# ----------------------------------------------------------------------------------------- shared


def _percent(hits: list[bool]) -> float:
    return 100.0 * sum(hits) / len(hits)


def _record(row: Mapping[str, Any], reply: str, extracted: Any, answer: str, hit: bool) -> dict:
    return {"index": _plain(row["index"]), "prediction": reply, "extracted": extracted,
            "answer": answer, "hit": bool(hit)}


def _per_category(rows: list[dict], cats: list[Any]) -> dict[str, float]:
    """Micro accuracy per category; rows without a category are left out of this breakdown only."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for rec, cat in zip(rows, cats):
        if not _missing(cat):
            groups[str(cat)].append(rec["hit"])
    return {c: _percent(h) for c, h in sorted(groups.items())}


def _score_rows(name: str, df: pd.DataFrame, predictions: Mapping[Any, Any],
                judge: Callable[[Mapping[str, Any], str], tuple[Any, str, bool]]) -> dict:
    """Micro accuracy (overall and per `category`) for formats judged one row at a time.

    `judge(row, reply)` returns (extracted, answer, hit).
    """
    pairs = _aligned(name, df, predictions)
    rows = [_record(row, reply, *judge(row, reply)) for row, reply in pairs]
    hits = [r["hit"] for r in rows]
    return {"score": _percent(hits), "accuracy": _percent(hits), "n": len(rows),
            "per_category": _per_category(rows, [row.get("category") for row, _ in pairs]),
            "rows": rows}


# ---------------------------------------------------------------------------------- MME-RealWorld

# The instruction VLMEvalKit sends for MME-RealWorld (English); kept word for word, trailing space
# included, because a different instruction is a different benchmark.
MME_INSTRUCTION = ("Select the best answer to the above multiple-choice question based on the image. "
                   "Respond with only the letter (A, B, C, D, or E) of the correct option. ")

# Removed wherever they occur (not only at the start), case-sensitively and in this order, as in the
# reference. They matter because "Best answer:" would otherwise yield "B", and because they count
# towards the ten-word limit below.
MME_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                "The best option is", "The correct option is", "Best answer:", "Best option:")

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def mme_prompt(row: Mapping[str, Any]) -> str:
    """Question, " The choices are listed below:", one "(X) text" line per option, instruction, cue.

    The option lines are rebuilt from the A-E columns; VLMEvalKit builds those columns by cutting the
    4-character "(X) " label off the original lines, so "(X) " + text restores them exactly.
    """
    options = "".join(f"({k}) {v}\n" for k, v in row_options(row).items())
    return f"{row['question']} The choices are listed below:\n{options}{MME_INSTRUCTION}\nThe best answer is:"


def mme_extract(reply: str, letters: str = "ABCDE") -> str:
    """The option letter of an MME-RealWorld reply, or "" when none can be read."""
    tagged = _ANSWER_TAG.search(reply)
    # A reasoning-style reply is judged on its <answer> content only, upper-cased as in the reference.
    # (So "<answer>The answer is D</answer>" reads "E": upper-cased text no longer matches the prefixes.)
    s = tagged.group(1).strip().upper() if tagged else reply
    s = s.strip()
    for prefix in MME_PREFIXES:
        s = s.replace(prefix, "")
    capital = re.search(f"[{letters}]", s)
    # A long free-form reply with no capital option letter is a non-answer, not a guess to rescue.
    if len(s.split()) > 10 and capital is None:
        return ""
    if capital is not None:
        return capital.group(0)
    # Fallback for lower-case replies: the reference tests whether the reply is a substring of "(a)",
    # "(b)", ... (so "c" and "(c)" both mean C). It would also map an empty reply to "A" (the empty
    # string is in every label); we score an empty reply as no answer instead of a free option A.
    if not s.strip():
        return ""
    low = s.lower()
    return next((k for k in letters if low in f"({k.lower()})"), "")


def _mme_judge(row: Mapping[str, Any], reply: str) -> tuple[str, str, bool]:
    extracted, answer = mme_extract(reply), str(row["answer"]).strip()
    return extracted, answer, extracted != "" and extracted == answer


def score_mme(df: pd.DataFrame, predictions: Mapping[Any, Any]) -> dict:
    """Micro accuracy over all rows (an unreadable reply is a miss), overall and per `category`."""
    return _score_rows("score_mme", df, predictions, _mme_judge)


# --------------------------------------------------------------------------------- HallusionBench

# The VQA punctuation rule of the reference (VLMEvalKit's process_punctuation): these characters,
# handled one at a time in this order. Note ":" , "'" and "." are not in the list.
VQA_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
                   "`", ",", "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# A period is kept when a digit touches it on either side ("1.5", "3.", ".5"), deleted otherwise.
# This is VLMEvalKit's pattern since May 2025; the reference calls it "not between digits". Older
# VLMEvalKit (a mistyped look-behind) deleted every period not followed by a digit, so "3." lost its
# period too; for yes/no reading the two never differ.
_LONE_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")
# The reference calls `pattern.sub("", text, re.UNICODE)`: the flag lands in the `count` argument and
# re.UNICODE == 32, so only the first 32 such periods are deleted. Kept, so "yes" followed by 33
# periods still reads "yes." (not "yes") exactly as in the reference.
_PERIOD_DELETE_LIMIT = 32


def vqa_normalise(text: str) -> str:
    """Apply the VQA punctuation rule (see the constants above) to `text`."""
    out = text
    # Both tests look at the *original* text, not at the result of earlier replacements.
    has_number_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in VQA_PUNCTUATION:
        # Punctuation next to a space is glued to nothing, so it is deleted; otherwise it may join two
        # words ("yes/no") and becomes a space. A "1,000"-style number anywhere forces deletion of all.
        if f"{p} " in text or f" {p}" in text or has_number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _LONE_PERIOD.sub("", out, count=_PERIOD_DELETE_LIMIT)


def yes_no(reply: str) -> str:
    """"Yes" / "No" when exactly one of the words occurs, else "unknown" (always a miss)."""
    words = vqa_normalise(reply.lower()).split()
    yes, no = "yes" in words, "no" in words
    if yes and not no:
        return "Yes"
    if no and not yes:
        return "No"
    return "unknown"


def hallusion_prompt(row: Mapping[str, Any]) -> str:
    """The raw question; nothing is added."""
    return str(row["question"])


def _yes_no_answer(value: Any) -> str:
    """The gold answer as "Yes"/"No".

    We assume VLMEvalKit's TSV, whose `answer` is "Yes"/"No" (its scorer compares that column with
    the extracted "Yes"/"No" directly). The original HallusionBench release stores gt_answer 1/0
    (1 = yes), so "1"/"0" (also as numbers) are accepted too; anything else is a data error.
    """
    s = str(_plain(value)).strip().lower()
    if s in ("yes", "1", "1.0"):
        return "Yes"
    if s in ("no", "0", "0.0"):
        return "No"
    raise ValueError(f"score_hallusion: answer {value!r} is neither Yes/No nor 1/0")


def _hallusion_ids(index: Any) -> tuple[str, str, str]:
    """(set_id, figure_id, question_id): fields 3, 4, 5 of the `_`-separated index."""
    parts = str(index).split("_")
    if len(parts) < 6:
        raise ValueError(f"score_hallusion: index {index!r} has fewer than 6 '_'-separated fields; "
                         "expected VLMEvalKit's HallusionBench indexes")
    return parts[3], parts[4], parts[5]


def _all_correct_percent(keys: list[Hashable], hits: list[bool]) -> tuple[float, int]:
    """(% of groups whose rows are all correct, number of groups)."""
    groups: dict[Hashable, bool] = {}
    for key, hit in zip(keys, hits):
        groups[key] = groups.get(key, True) and hit
    return _percent(list(groups.values())), len(groups)


def score_hallusion(df: pd.DataFrame, predictions: Mapping[Any, Any]) -> dict:
    """aAcc (rows), fAcc (figure groups), qAcc (question groups); score = their mean (the paper's Avg).

    Groups are keyed by tuples; VLMEvalKit joins the same three fields with "_" into one string, which
    only differs if an l2-category itself contained "_" in a colliding way.
    """
    pairs = _aligned("score_hallusion", df, predictions)
    rows, fig_keys, q_keys = [], [], []
    for row, reply in pairs:
        extracted, answer = yes_no(reply), _yes_no_answer(row["answer"])
        rows.append(_record(row, reply, extracted, answer, extracted == answer))
        set_id, figure_id, question_id = _hallusion_ids(row["index"])
        l2 = str(row.get("l2-category"))
        fig_keys.append((l2, set_id, figure_id))
        q_keys.append((l2, set_id, question_id))
    hits = [r["hit"] for r in rows]
    a_acc = _percent(hits)
    f_acc, n_fig = _all_correct_percent(fig_keys, hits)
    q_acc, n_q = _all_correct_percent(q_keys, hits)
    return {"score": (a_acc + f_acc + q_acc) / 3, "aAcc": a_acc, "fAcc": f_acc, "qAcc": q_acc,
            "n": len(rows), "n_figure_groups": n_fig, "n_question_groups": n_q, "rows": rows}


# ------------------------------------------------------------------------------------------- CRPE

CRPE_BLOCK = 4  # each question appears as 4 consecutive circular variants (options rotated)


def crpe_prompt(row: Mapping[str, Any]) -> str:
    """The question; its options are already part of the question text in CRPE."""
    return str(row["question"])


def crpe_correct(reply: str, answer: str) -> bool:
    """The reference's rule: a letter reply is judged on its first character, anything else by
    whether the answer's option text (`answer[4:]`, after the 4-character label) occurs in it.

    The reference crashes on an empty reply (it reads reply[0]); we count it as incorrect, since a
    model that says nothing has not answered. Replies are not stripped, as in the reference.
    """
    if not reply:
        return False
    if len(reply) == 1 or reply[0] in "ABCD":
        return reply[0] == answer[:1]
    # Case-insensitive containment of the option text. If a gold answer were a bare letter, answer[4:]
    # would be "" and every non-letter reply would pass; that is the reference's rule, kept as is.
    return answer[4:].lower() in reply.lower()


def _crpe_blocks(pairs: list[tuple[dict, str]]) -> list[list[tuple[dict, str]]]:
    """Blocks of 4 rows in file order (the reference's grouping; no id column marks them)."""
    if len(pairs) % CRPE_BLOCK:
        raise ValueError(f"score_crpe: {len(pairs)} rows is not a multiple of {CRPE_BLOCK}; CRPE rows come "
                         "in consecutive blocks of 4 circular variants (was the file filtered or reordered?)")
    blocks = [pairs[i:i + CRPE_BLOCK] for i in range(0, len(pairs), CRPE_BLOCK)]
    for block in blocks:
        # The four variants of one question share a category; a mixed block means the order is broken.
        cats = {str(row.get("category")) for row, _ in block}
        if len(cats) > 1:
            first = block[0][0]["index"]
            raise ValueError(f"score_crpe: block starting at index {first!r} mixes categories "
                             f"{sorted(cats)}; the rows are not in blocks of 4 variants")
    return blocks


def score_crpe(df: pd.DataFrame, predictions: Mapping[Any, Any]) -> dict:
    """% of 4-variant blocks with all 4 correct, overall and per `category` (of the block)."""
    blocks = _crpe_blocks(_aligned("score_crpe", df, predictions))
    rows: list[dict] = []
    block_hits, block_cats = [], []
    for b, block in enumerate(blocks):
        recs = []
        for row, reply in block:
            answer = str(row["answer"])
            letter = reply[0] if reply and (len(reply) == 1 or reply[0] in "ABCD") else None
            recs.append({**_record(row, reply, letter, answer, crpe_correct(reply, answer)), "block": b})
        rows += recs
        block_hits.append(all(r["hit"] for r in recs))
        block_cats.append(block[0][0].get("category"))
    per_cat = _per_category([{"hit": h} for h in block_hits], block_cats)
    return {"score": _percent(block_hits), "n": len(rows), "n_blocks": len(blocks),
            "row_accuracy": _percent([r["hit"] for r in rows]), "per_category": per_cat, "rows": rows}


# ------------------------------------------------------------------------------------ Mantis-Eval

MANTIS_MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
# Rows without options are Mantis-Eval's short-answer questions (InternVL's second prompt).
MANTIS_SHORT_INSTRUCTION = "Answer the question using a single word or phrase."
_IMAGE_TAG = "<image>"


def _n_images(row: Mapping[str, Any]) -> int:
    for key in ("images", "image_b64"):  # both are lists added by tsv.load_tsv
        if key in row and isinstance(row[key], (list, tuple)):
            return len(row[key])
    raise ValueError("mantis_prompt: the row has no `images`/`image_b64` list; load it with tsv.load_tsv")


def _mantis_question(question: str, n: int) -> str:
    """InternVL's clean-up of the release's "<image>" tags: drop the leading run of all n tags, then
    name any remaining tag after its image ("Image-1", "Image-2", ... in order). A question without
    tags passes through unchanged."""
    question = question.replace(" ".join([_IMAGE_TAG] * n), "").strip()
    for i in range(1, n + 1):
        question = question.replace(_IMAGE_TAG, f"Image-{i}", 1)
    return question


def mantis_prompt(row: Mapping[str, Any], image_token: str = "") -> str:
    """InternVL's Mantis-Eval prompt, as text that follows the row's images.

    InternVL interleaves a line "Image-i: <image>" per image (just "<image>" for one image). Our
    backends put all images before the text (Qwen-VL has no "<image>" text slot), so by default the
    placeholder is left out and the labels remain: "Image-1:\\nImage-2:\\n" and nothing for a
    single image. The labels still tie "Image-2" in the question to the second image. A backend that
    splits text on a placeholder can pass `image_token` (e.g. "<image>") to get InternVL's lines.
    """
    n = _n_images(row)
    options = row_options(row)
    body = _mantis_question(str(row["question"]), n)
    if options:
        body += "\n" + "\n".join(f"({k}) {v}" for k, v in options.items()) + "\n" + MANTIS_MC_INSTRUCTION
    else:
        body += "\n" + MANTIS_SHORT_INSTRUCTION
    body = body.strip()
    if n == 1:
        prefix = f"{image_token}\n" if image_token else ""
    else:
        prefix = "".join(f"Image-{i}: {image_token}".rstrip() + "\n" for i in range(1, n + 1))
    return prefix + body


def _mantis_reply(reply: str) -> str:
    """The reply stripped, with a "(X)" wrapper removed."""
    s = reply.strip()
    return s[1] if len(s) == 3 and s[0] == "(" and s[-1] == ")" else s


def mantis_correct(reply: str, row: Mapping[str, Any]) -> bool:
    """Strict match: the letter, "(letter)", the option's text, or its "(X) text" line as prompted.

    Anything longer ("The answer is B") is wrong, as in InternVL's scorer. Rows without options are
    short-answer questions: a case-insensitive exact match with the answer.
    """
    pred, answer, options = _mantis_reply(reply), str(row["answer"]).strip(), row_options(row)
    if not options:
        return pred.lower() == answer.lower()
    if answer not in options:
        raise ValueError(f"mantis_correct: answer {answer!r} of row {row['index']!r} is not one of its "
                         f"options {list(options)}")
    return pred in (answer, options[answer], f"({answer}) {options[answer]}")


def _mantis_judge(row: Mapping[str, Any], reply: str) -> tuple[str, str, bool]:
    return _mantis_reply(reply), str(row["answer"]).strip(), mantis_correct(reply, row)


def score_mantis(df: pd.DataFrame, predictions: Mapping[Any, Any]) -> dict:
    """Overall accuracy (multiple-choice and short-answer rows alike), plus per `category` if present."""
    return _score_rows("score_mantis", df, predictions, _mantis_judge)
