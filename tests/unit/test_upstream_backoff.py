from hypothesis import given
from hypothesis import strategies as st

from n2gateway.upstream.backoff import upstream_backoff


def test_delay_doubles_from_two_seconds_up_to_a_minute() -> None:
    policy = upstream_backoff(jitter=lambda: 0.0)
    assert [policy(n) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]


def test_huge_attempt_counts_stay_at_the_cap() -> None:
    assert upstream_backoff(jitter=lambda: 0.0)(10**6) == 60


@given(attempt=st.integers(min_value=0, max_value=10_000))
def test_default_jitter_adds_less_than_a_second(attempt: int) -> None:
    base = min(2.0 * 2**min(attempt, 100), 60.0)
    assert base <= upstream_backoff()(attempt) < base + 1.0


def test_jitter_source_is_used() -> None:
    assert upstream_backoff(jitter=lambda: 0.25)(0) == 2.25
