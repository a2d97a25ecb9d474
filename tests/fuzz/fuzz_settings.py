"""Hypothesis settings of the fuzz suite: derandomized (the same examples on every run, so CI
is stable), no example database (nothing written to the tree), no per-example deadline (a
request may legitimately take a while on a loaded machine; hangs are caught by the socket
timeouts instead), and budgets sized so that the suite takes well under 90 s on 2 cores."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

PROTOCOL_EXAMPLES = 400
FRAMING_EXAMPLES = 600
API_EXAMPLES = 500


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
