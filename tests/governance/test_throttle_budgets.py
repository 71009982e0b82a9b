"""Request budgets taken in leases: processes (here two _Budgets, as two web processes would hold) share
one counter in the throttle cache (Redis when configured), and together never allow more than the budget."""

import pytest

from apps.governance.throttling import LEASE_MAX, _Budgets, lease_size

WINDOW = 29_000_000  # any window number: the counter key carries it


@pytest.mark.parametrize(("allowed", "lease"), [(1, 1), (999, 1), (1000, 1), (2999, 2), (5000, 5), (10**6, LEASE_MAX)])
def test_lease_size(allowed, lease):
    assert lease_size(allowed) == lease


@pytest.mark.parametrize("allowed", [3, 3001, 5000])
def test_processes_together_allow_exactly_the_budget(allowed):
    first, second = _Budgets(), _Budgets()
    answers = [(first if turn % 2 else second).take("token:1", WINDOW, allowed, 3600) for turn in range(allowed + 40)]
    assert sum(answers) == allowed
    assert answers[:allowed] == [True] * allowed  # alternating evenly, neither holds back what the other needs
    assert answers[allowed:] == [False] * 40


def test_a_process_holding_a_lease_refuses_early_by_at_most_its_lease():
    """One process spends its lease; the other, whose requests come when the counter is spent, is refused
    while the first still holds requests. Together they never exceed the budget."""
    allowed, lease = 5000, lease_size(5000)
    busy, idle = _Budgets(), _Budgets()
    assert busy.take("token:2", WINDOW, allowed, 3600)  # takes a lease of 5, spends one
    taken_by_idle = 0
    while idle.take("token:2", WINDOW, allowed, 3600):
        taken_by_idle += 1
    assert taken_by_idle == allowed - lease
    assert sum(busy.take("token:2", WINDOW, allowed, 3600) for _ in range(2 * lease)) == lease - 1


def test_clients_and_windows_have_their_own_budgets():
    budgets = _Budgets()
    assert [budgets.take("token:3", WINDOW, 2, 3600) for _ in range(3)] == [True, True, False]
    assert budgets.take("token:4", WINDOW, 2, 3600)
    assert budgets.take("token:3", WINDOW + 1, 2, 3600)  # the next window
    assert budgets.take("token:3", WINDOW, 2, 60)  # another period is another budget
    budgets.clear()
    assert not budgets.take("token:3", WINDOW, 2, 3600)  # the shared counter remembers, after a restart too
