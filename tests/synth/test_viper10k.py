from viper.synth.runner import Reject
from viper.synth.viper10k import apply_verdicts, clip_decisions


def pairs(n):
    return [{"edit_id": f"e{i}", "id": f"s{i}"} for i in range(n)]


def test_clip_filter_and_judge_decisions():
    decisions = clip_decisions([0.99999, 0.1, 0.6, 0.7, 0.8], pairs(5), lo=0.2, hi=0.9999)
    assert [(d["kept"], d["reason"]) for d in decisions] == [
        (False, "unchanged"), (False, "drifted"), (True, ""), (True, ""), (True, "")]
    verdicts = [{"key": "e2", "is_valid": True, "reason": ""}, {"key": "e3", "is_valid": False, "reason": "extra cat"}]
    apply_verdicts(decisions, verdicts, [Reject("e4", "no_json", "", "{oops")])
    assert [(d["edit_id"], d["kept"], d["reason"], d["detail"]) for d in decisions[2:]] == [
        ("e2", True, "", ""), ("e3", False, "judge_rejected", "extra cat"), ("e4", False, "judge_no_json", "{oops")]
