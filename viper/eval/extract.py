"""Letter extraction for multiple-choice replies, VLMEvalKit exact-matching mode (no LLM judge).

The steps are numbered as in ../shared/reference/eval-scoring.md so each branch can be checked
against the reference. Reproducing them literally (quirks included) is the point: the paper's
numbers were scored this way, and only numbers scored the same way are comparable.
"""

from __future__ import annotations

import re

API_FAILURE = "Failed to obtain answer via API"

# Replies containing any of these are answered "Z" (a refusal, always a miss).
# The reference names the first two; the last two are our choice of plausible similar phrases
# (the wording used by VLMEvalKit's list as we recall it, not verified against its source).
REFUSAL_PHRASES: tuple[str, ...] = (
    "Cannot determine the answer",
    "I can't process this file.",
    "Sorry, I can't help with images of people yet.",
    "I'm sorry, but without the image provided",
)

_PUNCTUATION = ".()[],:;!*#{}"
# Case-insensitive and with no word boundary, so e.g. "the answer is because..." yields "B".
# That is the reference's behaviour and is kept on purpose.
_ANSWER_IS = re.compile(r"(?:correct\s+)?answer\s+is\s+\**([ABCD])\**", re.IGNORECASE)


def _tokens(reply: str) -> list[str]:
    for ch in _PUNCTUATION:
        reply = reply.replace(ch, " ")
    return reply.split()


def _from_letters(tokens: list[str], letters: list[str]) -> str | None:
    """Step 2: one standalone option letter near the end, or a lone "Z"."""
    found = [c for c in letters if c in tokens]
    if len(found) == 1:
        # A letter early in a long reply is more likely a word ("A cat ...") than the answer,
        # so only accept it among the last four tokens.
        if tokens.index(found[0]) > len(tokens) - 5:
            return found[0]
    elif not found and "Z" in tokens:
        return "Z"
    return None


def _from_option_text(reply: str, options: dict[str, str]) -> str | None:
    """Step 4: exactly one option text inside a reply that is not much longer than the options."""
    # A long free-form reply mentions many things; matching text inside it would be guessing.
    if len(reply) > 2 * sum(len(str(t)) for t in options.values()):
        return None
    low = reply.lower()
    hits = [k for k, text in options.items() if str(text).lower() in low]
    return hits[0] if len(hits) == 1 else None


def extract_choice(reply: str, options: dict[str, str]) -> str | None:
    """The option letter a reply chooses, "Z" for a refusal, or None (no answer / a miss).

    `options` maps the letters present in this row to their texts.
    """
    if API_FAILURE in reply:  # step 0: the call failed, there is no answer to read
        return None
    if any(p in reply for p in REFUSAL_PHRASES):
        return "Z"
    letter = _from_letters(_tokens(reply), list(options))  # steps 1-2
    if letter is not None:
        return letter
    m = _ANSWER_IS.search(reply)  # step 3
    if m:
        return m.group(1).upper()
    return _from_option_text(reply, options)  # step 4; None is step 5, a miss
