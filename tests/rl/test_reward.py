import numpy as np
import pytest

from viper.rl.reward import ViperReward, parse_output, r_correct, split_sentences


def test_parse_output_format():
    assert parse_output("<think>look</think>\n<answer>a. b.</answer>") == (True, "a. b.")
    assert parse_output("  <think>x</think><answer></answer>  ") == (True, "")
    ok, answer = parse_output("no tags at all. second.")
    assert (ok, answer) == (False, "no tags at all. second.")
    ok, answer = parse_output("<answer>only answer</answer>")
    assert not ok and answer.strip() == "only answer"
    ok, _ = parse_output("<think>a</think><answer>b</answer> trailing")
    assert not ok
    ok, _ = parse_output("<think>a<answer>x</answer></think><answer>b</answer>")
    assert not ok


def test_split_sentences():
    assert split_sentences("The cat is red. It sits left!\n- A tree is missing\n2) Text says 3.5 m") == [
        "The cat is red.", "It sits left!", "A tree is missing", "Text says 3.5 m"]
    assert split_sentences("  \n ") == []
    assert split_sentences("same. same.") == ["same.", "same."]


def test_r_correct_hand_computed():
    sents = ["aaaa", "bb", "cccccc"]  # lengths 4, 2, 6
    sim = np.array([[0.9, 0.1], [0.2, 0.84], [0.85, 0.0]])
    # hits: s1 (0.9), s3 (0.85 >= tau); s2 misses. (2/3) * (10/12)
    assert r_correct(sents, sim, 0.85) == pytest.approx(2 / 3 * 10 / 12)


def test_r_correct_edge_cases():
    assert r_correct([], np.zeros((0, 0)), 0.85) == 1.0      # faithful caption, nothing listed
    assert r_correct([], np.zeros((0, 2)), 0.85) == 0.0      # flaws exist, none listed
    assert r_correct(["x"], np.zeros((1, 0)), 0.85) == 0.0   # invented a flaw of a faithful caption
    dup = ["same hit", "same hit", "miss"]
    sim = np.array([[1.0], [1.0], [0.0]])
    assert r_correct(dup, sim, 0.85) == pytest.approx(2 / 3 * 16 / 20)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    from viper.backends.embed import Embedder
    from viper.zoo.embed import build_tiny_bge_m3

    out = tmp_path_factory.mktemp("embed")
    build_tiny_bge_m3(out, seed=0)
    return Embedder(str(out))


def test_reward_through_flagembedding(embedder):
    reward = ViperReward(embedder, tau=0.85, w_format=0.05, w_correct=0.95)
    gt = ["the red ball is missing", "the text says B"]
    other = "a purple square sits on sand"
    sims = embedder.encode([other]) @ embedder.encode(gt).T
    other_hits = bool(sims.max() >= 0.85)
    parts = reward.score(
        [f"<think>compare</think><answer>{gt[0]}</answer>",
         f"<answer>{gt[0]}\n{other}</answer>",
         "<think>x</think><answer></answer>",
         "<think>x</think><answer></answer>"],
        [gt, gt, gt, []])
    assert (parts[0].format, parts[0].correct) == (1.0, pytest.approx(1.0, abs=1e-6))
    assert parts[0].total == pytest.approx(1.0, abs=1e-6)
    expected = 1.0 if other_hits else 0.5 * len(gt[0]) / (len(gt[0]) + len(other))
    assert parts[1].format == 0.0 and parts[1].correct == pytest.approx(expected, abs=1e-6)
    assert parts[1].total == pytest.approx(0.95 * expected, abs=1e-6)
    assert (parts[2].correct, parts[2].total) == (0.0, pytest.approx(0.05))
    assert (parts[3].correct, parts[3].total) == (1.0, pytest.approx(1.0))


class CountingEmbedder:
    """The real tiny embedder, counting how often it is called and with how many texts."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def encode(self, texts):
        self.calls.append(len(texts))
        return self.inner.encode(texts)


def test_one_embedding_call_per_batch_and_cached_truths(embedder):
    counting = CountingEmbedder(embedder)
    reward = ViperReward(counting, tau=0.85, w_format=0.05, w_correct=0.95)
    gts = [["a red ball is missing"], ["the text says B", "a tree is left of the house"]]
    completions = ["<think>x</think><answer>one. two.</answer>", "<answer>three</answer>"]
    reward.score(completions, gts)
    assert counting.calls == [3, 3]  # ground truths once (3 unique), then all 3 answer sentences at once
    reward.score(completions, gts)
    assert counting.calls == [3, 3, 3]  # truths come from the cache now


def test_very_long_output_is_scored(embedder):
    reward = ViperReward(embedder, tau=0.85, w_format=0.05, w_correct=0.95)
    long_answer = "\n".join(f"sentence number {i} about a red square." for i in range(400))
    parts = reward.score([f"<think>{'z' * 20000}</think><answer>{long_answer}</answer>"], [["a red square"]])
    assert parts[0].format == 1.0 and 0.0 <= parts[0].correct <= 1.0
    assert parts[0].total == pytest.approx(0.05 + 0.95 * parts[0].correct)


def test_trl_reward_functions_score_each_batch_once_and_never_reuse_another_batchs(embedder):
    """Audit B2: the two TRL reward callables share one scoring per batch, keyed on the batch's content.
    Keyed on id(completions), a new list at a freed list's address got the previous batch's rewards."""
    from viper.rl.trl_backend import reward_functions

    counting = CountingEmbedder(embedder)
    fmt, correct = reward_functions(ViperReward(counting, tau=0.85, w_format=0.05, w_correct=0.95))
    gt = [["a red ball is missing"]] * 2
    good = [[{"role": "assistant", "content": "<think>x</think><answer>a red ball is missing</answer>"}]] * 2
    bad = [[{"role": "assistant", "content": "no tags here"}]] * 2
    assert fmt(good, gt) == [1.0, 1.0]
    calls = len(counting.calls)
    assert correct(good, gt) == [pytest.approx(1.0, abs=1e-6)] * 2
    assert len(counting.calls) == calls  # the second callable reused the scoring of the same batch
    batch = list(good)
    assert fmt(batch, gt) == [1.0, 1.0]
    batch[:] = bad  # the same object with another batch in it: what a reused address looks like
    assert fmt(batch, gt) == [0.0, 0.0] and correct(batch, gt) == [0.0, 0.0]


def test_numbered_lists_split_like_plain_ones():
    plain = "The cup is red.\nThe ball is blue. It rolls left.\nText says 3.5 m"
    numbered = "1. The cup is red.\n2. The ball is blue. It rolls left.\n3) Text says 3.5 m"
    expected = ["The cup is red.", "The ball is blue.", "It rolls left.", "Text says 3.5 m"]
    assert split_sentences(plain) == expected
    assert split_sentences(numbered) == expected
    assert split_sentences("(1) The cup is red. 2. The ball is blue.") == expected[:2]
    assert split_sentences("- The cup is red.\n* The ball is blue.") == expected[:2]
    assert split_sentences("1.") == [] and split_sentences("There are 2.") == ["There are 2."]


def test_a_numbering_policy_scores_exactly_like_a_plain_one(embedder):
    reward = ViperReward(embedder, tau=0.85, w_format=0.05, w_correct=0.95)
    gt = [["the red ball is missing", "the text says B"]] * 2
    plain = "<think>look</think><answer>the red ball is missing\nTriangles: seven</answer>"
    numbered = "<think>look</think><answer>1. the red ball is missing\n2. Triangles: seven</answer>"
    a, b = reward.score([plain, numbered], gt)
    assert a == b
    # the first sentence is a ground truth item, the second misses both (cosine 0.79 under the tiny
    # embedder): R_correct = 1/2 * 23/(23+16)
    assert a.correct == pytest.approx(0.5 * 23 / 39) and a.format == 1.0
