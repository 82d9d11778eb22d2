"""Settings of the fuzz harness (issue 11).

Every test here feeds one parser of outside input with generated and mutated input and asserts
that only the parser's documented error type escapes, within a time bound per input. Two
profiles, chosen by ``HYPOTHESIS_PROFILE``:

* ``fuzz-ci`` (default): a bounded number of examples, so ``make test`` stays quick;
* ``fuzz``: ``make fuzz`` — thousands of examples per test, for a long run before a release.

The profiles are applied per test (``@FUZZ``), never loaded globally, so the rest of the suite
keeps its own hypothesis settings.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fuzz-ci",
    max_examples=60,
    # Time is bounded by common.bounded (wall clock per parse); hypothesis' own deadline
    # would turn a busy CI machine into "flaky" failures.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=5_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
