"""The history checker catches what it claims to: each invariant broken on
purpose in a synthetic history/state (pure function, no server)."""

from __future__ import annotations

from tests.harness.checker import Run, Snapshot, check, fsck


def state(**over: object) -> Snapshot:
    base = dict(
        records={"a": {"st": "succeeded", "t": "rec", "a": "{}", "lt": "1ok", "dlv": "1"},
                 "b": {"st": "succeeded", "t": "rec", "a": "{}", "lt": "2ok", "dlv": "2"}},
        waiting={}, prios=[], leases=[], delayed=[], dead=[],
        stats={"succeeded": 2, "lease_expired": 1, "stale_settle": 1},
    )
    base.update(over)
    return Snapshot(**base)  # type: ignore[arg-type]


RUNS = [Run("start", "a", "1", 10), Run("end", "a", "1", 10),
        Run("start", "b", "1", 10), Run("start", "b", "2", 11),
        Run("end", "b", "2", 11), Run("end", "b", "1", 10)]


def test_clean_history_passes() -> None:
    report = check(["a", "b"], RUNS, state())
    report.assert_ok()
    assert report.duplicates == 1 and report.late_ends == 1


def test_lost_job() -> None:
    assert check(["a", "b", "c"], RUNS, state()).lost == ["c"]


def test_phantom_run() -> None:
    assert check(["a"], RUNS, state()).phantoms


def test_token_started_twice() -> None:
    runs = [*RUNS, Run("start", "a", "1", 12)]
    assert check(["a", "b"], runs, state()).double_token == [("a", "1")]


def test_second_accepted_completion() -> None:
    report = check(["a", "b"], RUNS, state(stats={"succeeded": 3, "lease_expired": 1,
                                                  "stale_settle": 1}))
    assert report.bad_completion


def test_unexplained_duplicate() -> None:
    report = check(["a", "b"], RUNS, state(stats={"succeeded": 2, "stale_settle": 1}))
    assert report.unexplained


def test_late_end_not_refused() -> None:
    report = check(["a", "b"], RUNS, state(stats={"succeeded": 2, "lease_expired": 1}))
    assert report.unexplained
    assert check(["a", "b"], RUNS, state(stats={"succeeded": 2, "lease_expired": 1}),
                 workers_killed=True).ok


def test_not_drained() -> None:
    records = {"a": {"st": "queued", "t": "rec", "a": "{}"}}
    report = check(["a"], [], state(records=records, waiting={0: ["a"]}, prios=["0"],
                                    stats={}))
    assert report.not_drained and not report.fsck


def test_fsck_finds_inconsistencies() -> None:
    records = {
        "q": {"st": "queued", "t": "rec", "a": "{}"},          # in no structure: stuck
        "r": {"st": "active", "t": "rec", "a": "{}"},          # leased and waiting
        "d": {"st": "succeeded", "t": "rec", "a": "{}"},       # finished but leased
        "h": {"st": "queued"},                                 # half-written
    }
    snap = state(records=records, waiting={0: ["r", "x"], 5: ["h"]}, prios=["0"],
                 leases=["r", "d"], stats={"succeeded": -1})
    problems = "\n".join(fsck(snap))
    assert "q has status 'queued' but is in no structure" in problems
    assert "r is in 2 places" in problems
    assert "x is in ['wait:0'] but has no record" in problems
    assert "d has status 'succeeded'" in problems
    assert "record h lacks fields" in problems
    assert "wait:5 holds 1 id(s) but level 5 is not in prios" in problems
    assert "counter succeeded is negative" in problems
