import pytest

from phalanx.simulation.metrics import Summary, jain_index, percentile, summarize


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, 0.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 99, 99.0),
        ([3.0, 1.0, 2.0], 100, 3.0),
    ],
    ids=["empty", "single", "median-even", "p99-of-100", "max"],
)
def test_percentile_nearest_rank(values: list[float], pct: float, expected: float) -> None:
    assert percentile(values, pct) == expected


def test_summarize() -> None:
    assert summarize([10.0, 20.0, 30.0, 40.0]) == Summary(4, 25.0, 20.0, 40.0)
    assert summarize([]) == Summary(0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([1.0, 1.0, 1.0], 1.0), ([1.0, 0.0, 0.0, 0.0], 0.25), ([3.0, 1.0], 0.8), ([], 1.0)],
    ids=["equal", "one-takes-all", "three-to-one", "empty"],
)
def test_jain_index(values: list[float], expected: float) -> None:
    assert jain_index(values) == pytest.approx(expected)
