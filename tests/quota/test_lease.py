"""The controller lease's decisions (kuat.quota.lease), with plain numbers for time."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuat.collectors.errors import KuatError
from kuat.quota.lease import (
    LeaseError,
    LeasePolicy,
    LeaseState,
    Step,
    holder_of,
    lease_value,
    next_step,
    on_conflict,
    on_error,
    on_written,
)

P = LeasePolicy(agent_id="hall-a", ttl_s=9.0)


def test_bound_is_ttl_plus_one_renewal() -> None:
    assert P.renew_s == pytest.approx(3.0)
    assert P.failover_bound_s == pytest.approx(12.0)


def test_a_newcomer_tries_to_create_and_a_holder_renews() -> None:
    assert next_step(LeaseState(), 0.0) is Step.CREATE
    held = on_written(P, revision=7, sent=100.0)
    assert held.is_controller(100.0) and held.holder == "hall-a"
    assert next_step(held, 103.0) is Step.RENEW


def test_the_holder_stops_before_the_server_can_expire_its_write() -> None:
    # sent at 100: the server stamps the write at >= 100 and expires it at >= 109
    held = on_written(P, revision=7, sent=100.0)
    assert held.is_controller(107.1)
    assert not held.is_controller(100.0 + P.ttl_s * P.guard)
    assert not held.is_controller(109.0)
    assert next_step(held, 109.0) is Step.CREATE


def test_a_failed_compare_and_set_deposes_at_once() -> None:
    held = on_written(P, revision=7, sent=100.0)
    lost = on_conflict(P, held, 101.0, "hall-b", 9)
    assert not lost.is_controller(101.0) and lost.holder == "hall-b"
    assert next_step(lost, 101.0) is Step.CREATE


def test_our_own_renewal_whose_reply_was_lost_is_adopted_without_extending() -> None:
    held = on_written(P, revision=7, sent=100.0)
    # the renewal sent at 103 reached the server (revision 8) but its answer was lost; the
    # next renewal names 7 and fails: the key shows our own value at 8
    again = on_conflict(P, held, 106.0, "hall-a", 8)
    assert again.revision == 8 and again.held_until == held.held_until
    assert next_step(again, 106.0) is Step.RENEW
    # not past our own deadline, and never a revision that is not newer
    assert on_conflict(P, held, 108.0, "hall-a", 8).revision is None
    assert on_conflict(P, held, 106.0, "hall-a", 7).revision is None


def test_an_unreachable_server_keeps_the_holder_until_its_own_deadline() -> None:
    held = on_written(P, revision=7, sent=100.0)
    assert on_error(held, 104.0) == held  # keeps acting, keeps the revision to renew with
    after = on_error(held, 108.0)
    assert not after.is_controller(108.0) and after.revision is None


@given(
    ttl=st.floats(0.1, 3600),
    sent=st.floats(0, 1e6),
    elapsed=st.floats(0, 1e4),
)
def test_never_controller_past_the_ttl_after_sending(
    ttl: float, sent: float, elapsed: float
) -> None:
    p = LeasePolicy(agent_id="a", ttl_s=ttl)
    state = on_written(p, 1, sent)
    now = sent + elapsed
    state = on_error(state, now)
    if state.is_controller(now):
        assert now < sent + ttl


@pytest.mark.parametrize(
    "kwargs",
    [
        {"agent_id": "", "ttl_s": 5.0},
        {"agent_id": "a", "ttl_s": 0.0},
        {"agent_id": "a", "ttl_s": math.nan},
        {"agent_id": "a", "ttl_s": 5.0, "renew_fraction": 0.9},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(LeaseError):
        LeasePolicy(**kwargs)  # type: ignore[arg-type]


def test_the_value_names_the_holder() -> None:
    assert holder_of(lease_value("hall-c", 1.7e9, 9.0)) == "hall-c"


@given(st.binary(max_size=64))
def test_any_other_value_is_a_lease_error(raw: bytes) -> None:
    try:
        holder_of(raw)
    except LeaseError as exc:
        assert isinstance(exc, KuatError)
