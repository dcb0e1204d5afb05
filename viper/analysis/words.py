"""What the policy says while it thinks (the paper's Figure 4a): word and phrase counts of `<think>` text.

The paper reports operation verbs such as "scan", "zoom in", "look closely at" and "focus on" appearing in the
chain of thought after Caption Self-Refining RL. Here the reasoning of two models on the same prompts is counted:
words (lower-cased letters, stop words dropped), two-word phrases, and each operation phrase, with its rate per
1,000 words so runs of different lengths compare.
"""

from __future__ import annotations

import re
from collections import Counter

THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# visual-operation phrases: the paper's four and their close variants
OPERATIONS = ("scan", "zoom in", "look closely", "focus on", "examine", "inspect", "look at", "crop", "compare",
              "check", "observe")
STOP = frozenset("""a an the and or but if then of in on at to for from by with without as is are was were be been
being it its this that these those there here i me my we our you your he she they them their his her not no so
do does did has have had can could will would should may might must just also than too very into over under about
which what who whom whose when where why how all any each both few more most other some such only own same s t
""".split())


def think_text(reply: str) -> str:
    """The reasoning of a reply: what is inside <think> (to the end if it never closes), else nothing."""
    return " ".join(m.strip() for m in THINK.findall(reply))


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def count(replies: list[str], top: int = 30) -> dict:
    """Frequencies over the <think> text of `replies`: top words and two-word phrases (stop words dropped) and
    every operation phrase (counted in the full word sequence)."""
    texts = [think_text(r) for r in replies]
    seqs = [words(t) for t in texts]
    all_words = [w for s in seqs for w in s]
    content = Counter(w for w in all_words if w not in STOP and len(w) > 1)
    bigrams = Counter(f"{a} {b}" for s in seqs for a, b in zip(s, s[1:]) if a not in STOP and b not in STOP)
    joined = [" ".join(s) for s in seqs]
    ops = {op: sum(len(re.findall(rf"\b{re.escape(op)}\b", j)) for j in joined) for op in OPERATIONS}
    n = len(all_words)
    return {"replies": len(replies), "with_think": sum(bool(t) for t in texts), "words": n,
            "top_words": content.most_common(top), "top_phrases": bigrams.most_common(top),
            "operations": ops, "operations_per_1k_words": {op: round(1000 * c / n, 3) if n else 0.0
                                                           for op, c in ops.items()}}
