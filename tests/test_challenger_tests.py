"""The final pick's paired tests and corrections (``promptsearch.study.challenger_tests``):
the sign test, the Wilcoxon test of the gold probabilities, Holm, the fixed sequence
and the fallback procedure, on challengers with known per-example results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from scipy.stats import binomtest

from promptsearch.errors import ConfigError
from promptsearch.study.challenger_tests import fallback_levels, fallback_weights
from promptsearch.study.selection import (
    Challenger,
    decide,
    holm,
    paired_gold_test,
    sign_test,
)


def test_sign_test_is_the_one_sided_binomial_test() -> None:
    assert sign_test(6, 1) == pytest.approx(binomtest(6, 7, 0.5, alternative="greater").pvalue)
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 0) == pytest.approx(1 / 32)


def test_holm_adjusts_step_down_and_keeps_order() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def _challenger(key: str, per: Sequence[float], pooled: float) -> Challenger:
    confirm = sum(per) / len(per)
    return Challenger(key, "prompt", pooled, confirm, pooled, None, tuple(per))


def test_decide_keeps_the_incumbent_without_evidence() -> None:
    incumbent = _challenger("seed", [1, 0, 1, 0, 1, 0, 1, 0], 0.5)
    lucky = _challenger("lucky", [1, 1, 1, 0, 1, 0, 1, 0], 0.9)  # one more right: p = 0.5
    pick, rows = decide(incumbent, [lucky], alpha=0.1)
    assert pick == "seed"
    assert rows[1]["wins"] == 1 and rows[1]["losses"] == 0 and not rows[1]["supported"]


def test_decide_takes_a_supported_challenger_with_the_best_pooled_score() -> None:
    incumbent = _challenger("seed", [0] * 10, 0.3)
    strong = _challenger("strong", [1] * 8 + [0, 0], 0.8)
    stronger_pooled = _challenger("pooled", [1] * 7 + [0] * 3, 0.85)
    pick, rows = decide(incumbent, [strong, stronger_pooled], alpha=0.1)
    assert pick == "pooled"
    assert all(row["supported"] for row in rows[1:])
    assert rows[1]["adjusted_p"] >= rows[1]["p_value"]


def test_sequence_tests_the_first_challenger_at_the_full_level() -> None:
    # 4 won, 0 lost on 8 held-back examples: p = 1/16; two null challengers behind it
    incumbent = _challenger("seed", [0] * 8, 0.3)
    first = _challenger("first", [1] * 4 + [0] * 4, 0.6)
    nulls = [_challenger(f"null{i}", [0] * 8, 0.3) for i in range(2)]
    pick, rows = decide(incumbent, [first, *nulls], alpha=0.1)
    assert pick == "first"
    assert rows[1]["order"] == 1 and rows[1]["adjusted_p"] == pytest.approx(1 / 16)
    assert [row["adjusted_p"] for row in rows[2:]] == [1.0, 1.0]
    # Holm over the three tests asks the same challenger for p <= 0.1 / 3
    pick, rows = decide(incumbent, [first, *nulls], alpha=0.1, procedure="holm")
    assert pick == "seed" and rows[1]["adjusted_p"] == pytest.approx(3 / 16)


def test_sequence_stops_at_the_first_challenger_without_evidence() -> None:
    incumbent = _challenger("seed", [0] * 10, 0.3)
    lucky = _challenger("lucky", [1] + [0] * 9, 0.4)  # one won: p = 0.5
    strong = _challenger("strong", [1] * 8 + [0, 0], 0.8)  # p = 1/256, but tested after
    pick, rows = decide(incumbent, [lucky, strong], alpha=0.1)
    assert pick == "seed"
    assert rows[2]["p_value"] == pytest.approx(1 / 256) and rows[2]["adjusted_p"] == 0.5
    assert not rows[2]["supported"]
    # one worse than the incumbent on the held-back part stops the sequence too
    worse = replace(_challenger("worse", [0] * 10, 0.2), per_example_gold=(0.9,) * 10)
    incumbent = replace(incumbent, per_example_gold=(0.1,) * 10)
    strong = replace(strong, per_example_gold=(0.9,) * 10)
    incumbent = replace(incumbent, confirm_score=0.1)
    pick, rows = decide(incumbent, [worse, strong], alpha=0.1)
    assert pick == "seed" and rows[1]["adjusted_p"] == rows[2]["adjusted_p"] == 1.0
    assert decide(incumbent, [strong, worse], alpha=0.1)[0] == "strong"


def test_fallback_levels_carry_a_passed_level_forward_and_go_on_past_a_failure() -> None:
    assert fallback_weights(1) == [1.0] and fallback_weights(0) == []
    assert fallback_weights(4) == pytest.approx([0.5, 1 / 6, 1 / 6, 1 / 6])
    # passed, passed: each level adds its share to the one before
    assert fallback_levels([0.01, 0.05, 0.5], 0.1) == pytest.approx([0.05, 0.075, 0.1])
    # a failure passes nothing on, but the next still gets its own share
    assert fallback_levels([0.5, 0.01, 0.5], 0.1) == pytest.approx([0.05, 0.025, 0.05])
    # a p-value of 1 (a challenger worse than the incumbent) is never rejected
    assert fallback_levels([1.0, 0.5], 1.0 - 1e-9)[1] == pytest.approx(0.5 - 5e-10)


def test_fallback_tests_the_challengers_after_one_without_evidence() -> None:
    incumbent = _challenger("seed", [0] * 10, 0.3)
    lucky = _challenger("lucky", [1] + [0] * 9, 0.4)  # one won: p = 0.5
    strong = _challenger("strong", [1] * 8 + [0, 0], 0.8)  # p = 1/256
    pick, rows = decide(incumbent, [lucky, strong], alpha=0.1, procedure="fallback")
    assert pick == "strong" and not rows[1]["supported"] and rows[2]["supported"]
    # tested at 0.05 (its half of alpha), shown as p scaled to alpha
    assert rows[2]["adjusted_p"] == pytest.approx((1 / 256) * 0.1 / 0.05)
    assert rows[1]["adjusted_p"] == pytest.approx(min(1.0, 0.5 * 0.1 / 0.05))
    # the first is tested at half of alpha: 4 won of 8 (p 1/16) passes the sequence only
    first = _challenger("first", [1] * 4 + [0] * 4, 0.6)
    nulls = [_challenger(f"null{i}", [0] * 8, 0.3) for i in range(2)]
    small = _challenger("seed", [0] * 8, 0.3)
    assert decide(small, [first, *nulls], alpha=0.1)[0] == "first"
    assert decide(small, [first, *nulls], alpha=0.1, procedure="fallback")[0] == "seed"
    # one worse than the incumbent is not supported, whatever its p-value, and passes
    # no level on
    gold = replace(incumbent, per_example_gold=(0.1,) * 10, confirm_score=0.35)
    worse = replace(_challenger("worse", [1] * 3 + [0] * 7, 0.3), per_example_gold=(0.9,) * 10)
    pick, rows = decide(gold, [worse, strong], alpha=0.1, procedure="fallback")
    assert rows[1]["p_value"] < 0.01 and rows[1]["adjusted_p"] == 1.0
    assert not rows[1]["supported"] and pick == "strong"
    assert rows[2]["adjusted_p"] == pytest.approx(rows[2]["p_value"] * 0.1 / 0.05)


def test_two_tests_of_one_challenger_are_bonferroni_corrected() -> None:
    incumbent = replace(_challenger("seed", [1, 0] * 4, 0.5), per_example_gold=(0.55, 0.45) * 4)
    surer = replace(_challenger("surer", [1, 0] * 4, 0.5), per_example_gold=(0.9, 0.48) * 4)
    rows = decide(incumbent, [surer], alpha=0.1)[1]
    assert rows[1]["p_value"] == pytest.approx(rows[1]["p_gold"])
    assert rows[1]["adjusted_p"] == pytest.approx(2 * rows[1]["p_gold"])


def test_sign_tests_count_only_more_examples_right_and_are_not_doubled() -> None:
    # surer of the gold answers everywhere, right no more often: passes on the gold
    # test with "sign+gold", never with "sign"
    incumbent = replace(_challenger("seed", [1, 0] * 4, 0.5), per_example_gold=(0.55, 0.45) * 4)
    surer = replace(_challenger("surer", [1, 0] * 4, 0.5), per_example_gold=(0.9, 0.48) * 4)
    assert decide(incumbent, [surer], alpha=0.1)[0] == "surer"
    pick, rows = decide(incumbent, [surer], alpha=0.1, tests="sign")
    assert pick == "seed" and rows[1]["p_gold"] is None and rows[1]["test"] == "sign"
    assert rows[1]["p_value"] == rows[1]["adjusted_p"] == 1.0
    # 4 won, 0 lost: p 1/16, undoubled with "sign" (passes at 0.1), doubled to 1/8 with
    # "sign+gold" where the gold test is no stronger
    small = replace(_challenger("seed", [0] * 8, 0.3), per_example_gold=(0.4,) * 8)
    won = replace(
        _challenger("won", [1] * 4 + [0] * 4, 0.6), per_example_gold=(0.6,) * 4 + (0.4,) * 4
    )
    pick, rows = decide(small, [won], alpha=0.1, tests="sign")
    assert pick == "won" and rows[1]["adjusted_p"] == pytest.approx(1 / 16)
    pick, rows = decide(small, [won], alpha=0.1)
    assert pick == "seed" and rows[1]["adjusted_p"] == pytest.approx(1 / 8)
    with pytest.raises(ConfigError, match="tests must be one of sign\\+gold, sign"):
        decide(small, [won], alpha=0.1, tests="gold")


def test_paired_gold_test_is_the_one_sided_wilcoxon_test() -> None:
    from scipy.stats import wilcoxon

    surer = [0.9, 0.8, 0.7, 0.6, 0.9, 0.8, 0.55, 0.7]
    base = [0.6, 0.5, 0.6, 0.6, 0.5, 0.7, 0.5, 0.4]
    diffs = [a - b for a, b in zip(surer, base, strict=True)]
    expected = wilcoxon(diffs, zero_method="wilcox", alternative="greater").pvalue
    assert paired_gold_test(surer, base) == pytest.approx(expected)
    assert paired_gold_test(base, base) == 1.0


def test_decide_uses_gold_probabilities_when_the_scores_have_them() -> None:
    # same accuracy on 8 held-back examples, but surer of every gold label: supported
    incumbent = replace(_challenger("seed", [1, 0] * 4, 0.5), per_example_gold=(0.55, 0.45) * 4)
    surer = replace(_challenger("surer", [1, 0] * 4, 0.5), per_example_gold=(0.9, 0.48) * 4)
    pick, rows = decide(incumbent, [surer], alpha=0.1)
    assert pick == "surer" and rows[1]["test"] == "wilcoxon-gold" and rows[1]["p_sign"] == 1.0
    # surer, but less accurate there: not supported
    worse = replace(_challenger("worse", [1, 0, 0, 0] * 2, 0.5), per_example_gold=(0.9,) * 8)
    assert decide(incumbent, [worse], alpha=0.1)[0] == "seed"
