"""The ingest actor's histograms bucket like Prometheus: `le` is inclusive and cumulative."""

from pipeline.ingest.stats import Distribution


def test_buckets_are_inclusive_and_cumulative():
    distribution = Distribution((1.0, 2.0, 4.0))
    for value in (0.5, 1.0, 3.0, 9.0):
        distribution.observe(value)
    assert distribution.cumulative() == [("1.0", 2), ("2.0", 2), ("4.0", 3), ("+Inf", 4)]
    assert distribution.total == 13.5
