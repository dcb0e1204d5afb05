"""Reasoning-word counts against literal values."""

from viper.analysis.words import count, think_text


def test_think_text_is_the_reasoning_only():
    assert think_text("<think>I scan the top.</think><answer>a dog</answer>") == "I scan the top."
    assert think_text("<think>never closed, zoom in") == "never closed, zoom in"
    assert think_text("<answer>no reasoning</answer>") == ""


def test_counts_words_phrases_and_operations():
    replies = ["<think>I zoom in on the dog, then I focus on the red dog.</think><answer>x</answer>",
               "<think>Scan the sign; zoom in.</think>", "<answer>dog</answer>"]
    c = count(replies, top=3)
    assert c["replies"] == 3 and c["with_think"] == 2
    assert c["words"] == 18  # 13 in the first reasoning, 5 in the second
    assert set(c["top_words"][:2]) == {("dog", 2), ("zoom", 2)}
    assert c["operations"]["zoom in"] == 2 and c["operations"]["focus on"] == 1 and c["operations"]["scan"] == 1
    assert c["operations"]["crop"] == 0
    assert c["operations_per_1k_words"]["zoom in"] == round(1000 * 2 / 18, 3)
    assert ("red dog", 1) in c["top_phrases"]  # "the" is a stop word: no "the red"
