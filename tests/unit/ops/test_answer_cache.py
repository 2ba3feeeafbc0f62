"""AnswerCache: answers handed out again only for equal inputs, while young enough."""

from __future__ import annotations

from phalanx.ops.answer_cache import AnswerCache


def test_an_answer_is_kept_for_equal_inputs_within_its_age() -> None:
    cache: AnswerCache[str] = AnswerCache(max_age_s=10.0)
    cache.put("q", (1, ["n1"]), 100.0, "answer")
    assert cache.get("q", (1, ["n1"]), 105.0) == "answer"
    assert cache.get("q", (1, ["n1"]), 110.0) == "answer"
    assert cache.get("q", (1, ["n1"]), 110.5) is None  # too old
    assert cache.get("q", (1, ["n1"]), 99.0) is None  # the clock went back
    assert cache.get("q", (2, ["n1"]), 101.0) is None  # other inputs
    assert cache.get("other", (1, ["n1"]), 101.0) is None
    assert cache.computed == 1


def test_the_least_recently_used_answer_goes_first() -> None:
    cache: AnswerCache[int] = AnswerCache(size=2)
    cache.put("a", 0, 0.0, 1)
    cache.put("b", 0, 0.0, 2)
    assert cache.get("a", 0, 0.0) == 1  # a is now the most recently used
    cache.put("c", 0, 0.0, 3)
    assert (cache.get("a", 0, 0.0), cache.get("b", 0, 0.0), cache.get("c", 0, 0.0)) == (1, None, 3)
