"""The generated grounding world: every expression names exactly its target, which a shape alone cannot."""

from viper.ivt.world import Obj, phrase, resolve, samples


def test_resolution_rules_on_a_hand_made_scene():
    objs = [Obj("circle", "red", (0, 0, 10, 10)), Obj("circle", "blue", (20, 0, 40, 20)),
            Obj("square", "green", (50, 0, 60, 10))]
    assert resolve(objs, {"shape": "circle"}) == [0, 1]
    assert resolve(objs, {"shape": "circle", "colour": "blue"}) == [1]
    assert resolve(objs, {"shape": "circle", "size": "larger"}) == [1]
    assert resolve(objs, {"shape": "circle", "size": "smaller"}) == [0]
    assert resolve(objs, {"shape": "circle", "relation": ("left of", 2)}) == [0, 1]
    assert resolve(objs, {"shape": "circle", "relation": ("left of", 1)}) == [0]
    assert phrase(objs, {"shape": "circle", "relation": ("left of", 1)}) == "the circle left of the blue circle"
    same = [Obj("square", "red", (0, 0, 10, 10)), Obj("square", "red", (20, 0, 30, 10))]
    assert resolve(same, {"shape": "square", "size": "larger"}) == []  # a tie has no "larger"


def test_generated_samples_are_unambiguous_in_bounds_and_reproducible():
    got = list(samples(40, 96, seed=3))
    assert len(got) == 40 and got[0]["expression"] == list(samples(1, 96, seed=3))[0]["expression"]
    assert {s["split"] for s in got} == {"train", "val", "test"}
    for s in got:
        x1, y1, x2, y2 = s["box"]
        assert 0 <= x1 < x2 <= s["width"] and 0 <= y1 < y2 <= s["height"]
        assert s["distractors"] >= 1 and s["expression"].startswith("the ")
        assert s["image"].size == (96, 96)
    def kind(text: str) -> str:
        if any(r in text for r in ("left of", "right of", "above", "below")):
            return "relation"
        return "size" if "larger" in text or "smaller" in text else "colour"

    kinds = {kind(s["expression"]) for s in got}
    assert kinds == {"colour", "size", "relation"}
