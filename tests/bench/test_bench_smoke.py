"""The benchmark runs end to end in --quick mode and reports every figure, so it never rots."""

from __future__ import annotations

import json

import pytest

from bench import engine_overhead as eo
from bench import run
from engine import runtime, store

TIMINGS = ("n", "median_ms", "p95_ms", "mean_ms", "min_ms", "max_ms", "cpu_median_ms", "cpu_p95_ms")
OPERATIONS = [
    (kind, state, operation)
    for kind in ("engine", "http")
    for state in ("empty", "after_finished")
    for operation in ("start_instance", "complete_task")
]
PHASES = (
    "load",
    "crypto",
    "deserialize",
    "validate",
    "step",
    "projections",
    "serialize",
    "audit",
    "flush",
    "commit",
)


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _assert_timings(figures: dict, where: str) -> None:
    for key in TIMINGS:
        assert _positive(figures[key]), f"{where}.{key} = {figures.get(key)!r}"
    assert figures["min_ms"] <= figures["median_ms"] <= figures["p95_ms"] <= figures["max_ms"], where


def test_quick_run_reports_every_figure(database_url, tmp_path, capsys):
    out = tmp_path / "bench.json"
    results = run.main(["--quick", "--db", database_url, "--reset", "--json-out", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    for kind, state, operation in OPERATIONS:
        _assert_timings(results[kind][state][operation], f"{kind}.{state}.{operation}")
    assert results["engine"]["empty"]["complete_task"]["n"] == 10 * run.QUICK.instances
    for variant in ("full_spec", "state_only"):
        _assert_timings(results["bare"][variant]["step"], f"bare.{variant}")
        assert _positive(results["bare"][variant]["state_bytes"])
    # The engine stores no spec, so its state is smaller than the naive full serialization.
    assert results["bare"]["state_only"]["state_bytes"] < results["bare"]["full_spec"]["state_bytes"]
    assert results["finished_instances"] >= run.QUICK.finished

    for variant in ("full_spec", "state_only"):
        _assert_timings(results["bare_after_fill"][variant]["step"], f"bare after fill {variant}")
    for operation in ("start_instance", "complete_task"):
        _assert_timings(results["engine"]["control"][operation], f"control {operation}")
    breakdowns = [results["breakdown"]] + [
        results["large"][c]["breakdown"] for c in ("multi_instance", "long_history")
    ]
    for breakdown in breakdowns:
        for phase in PHASES:
            assert _positive(breakdown["phases_mean_ms"][phase]), phase
            assert breakdown["phases_cpu_mean_ms"][phase] >= 0, phase
        assert _positive(breakdown["total_mean_ms"]) and _positive(breakdown["cpu_total_mean_ms"])
        assert _positive(breakdown["sql_statements_per_complete"])
        assert _positive(breakdown["sql_driver_mean_ms"])
    assert results["breakdown"]["completes"] == 10 * run.QUICK.breakdown_instances

    for case in ("multi_instance", "long_history"):
        _assert_timings(results["large"][case]["complete_task"], case)
        _assert_timings(results["large"][case]["bare"]["step"], f"{case}.bare")
        assert _positive(results["large"][case]["state_bytes"])
    assert results["large"]["multi_instance"]["items"] == run.QUICK.multi_items
    assert results["large"]["long_history"]["completed_before"] == run.QUICK.long_history

    for name, value in results["ratios"].items():
        assert _positive(value), name
    assert set(run.TARGETS) <= set(results["targets"])
    assert all(isinstance(t["met"], bool) for t in results["targets"].values())
    assert results["database"]["backend"] in ("sqlite", "postgresql")
    assert _positive(results["machine"]["nproc"])
    assert results["large"]["long_history"]["wrongly_ended_after_loop_backs"] is None  # not probed in --quick

    printed = capsys.readouterr().out
    assert json.loads(printed.split("\n\n", 1)[0]) == json.loads(out.read_text())
    assert "| engine complete_task |" in printed and "| ratio | value | target | met |" in printed


def test_refuses_a_database_that_is_not_empty(database_url, tmp_path):
    with pytest.raises(eo.BenchError):  # the second bench may not measure on top of the first
        eo.open_bench(database_url, tmp_path / "one", reset=True).close()
        eo.open_bench(database_url, tmp_path / "two")


def test_summary_uses_nearest_rank_p95():
    figures = eo.summarize([float(n) for n in range(1, 101)])
    assert figures["median_ms"] == 50.5 and figures["p95_ms"] == 95.0 and figures["n"] == 100
    assert eo.summarize([7.0])["p95_ms"] == 7.0
    with pytest.raises(eo.BenchError):
        eo.summarize([])


def test_phase_timers_are_removed_afterwards_even_on_error():
    originals = {(owner, name): getattr(owner, name) for _, owner, name in eo.PHASES}
    with pytest.raises(RuntimeError), eo.instrumented(eo.PhaseClock()):
        assert store.load_state is not originals[(store, "load_state")]
        raise RuntimeError("boom")
    for (owner, name), original in originals.items():
        assert getattr(owner, name) is original, name
    assert runtime._sync_tasks is originals[(runtime, "_sync_tasks")]


def test_phase_clock_counts_own_time_only():
    clock = eo.PhaseClock()
    inner = clock.wrap("serialize", lambda: eo.time.sleep(0.05))
    outer = clock.wrap("projections", lambda: (eo.time.sleep(0.005), inner()))
    nested_step = clock.wrap("step", lambda: eo.time.sleep(0.005))
    outer()
    clock.wrap("audit", nested_step)()  # a step inside another phase is that phase's time
    assert clock.seconds["serialize"] >= 0.05
    # Without the nested 50 ms, the outer phase keeps only its own few ms.
    assert 0.005 <= clock.seconds["projections"] < clock.seconds["serialize"]
    assert clock.seconds["audit"] >= 0.005 and clock.seconds["step"] == 0


def test_a_renamed_engine_function_is_reported_by_name(monkeypatch):
    monkeypatch.setattr(eo, "PHASES", eo.PHASES + (("step", runtime, "no_such_function"),))
    original = runtime._sync_tasks
    with pytest.raises(eo.BenchError, match="runtime.no_such_function"), eo.instrumented(eo.PhaseClock()):
        pass
    assert runtime._sync_tasks is original  # the ones already wrapped are put back
