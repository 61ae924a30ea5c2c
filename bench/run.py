"""`python -m bench.run`: the engine-core benchmark, printed as JSON and a Markdown table.

    python -m bench.run                      # full run on a fresh SQLite file (≈10-20 min)
    python -m bench.run --quick              # seconds; what tests/bench runs
    python -m bench.run --db postgresql+psycopg://postgres@127.0.0.1:5432/bench --reset
    python -m bench.run --finished 1000 --json-out results.json --profile /tmp/profiles

Progress goes to stderr; stdout holds the JSON, then the tables.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sqlalchemy.engine import make_url

from . import engine_overhead as eo

TARGETS = {
    "engine_vs_bare_state_only": 3.0,
    "engine_vs_bare_full_spec": 3.0,
    "growth_engine_complete_task": 1.2,
    "growth_engine_start_instance": 1.2,
    "growth_engine_complete_task_vs_control": 1.2,
    "growth_engine_start_instance_vs_control": 1.2,
    "growth_http_complete_task": 1.2,
    "growth_http_start_instance": 1.2,
    "multi_instance_vs_seq10": 3.0,
    "long_history_vs_seq10": 3.0,
}


@dataclass(frozen=True)
class Counts:
    instances: int  # 10-task instances timed through the engine API, per database state
    http_instances: int  # the same through HTTP
    finished: int  # finished instances put in the database between the two states
    breakdown_instances: int  # instances whose completes are broken down by phase
    bare_instances: int  # instances run with bare SpiffWorkflow, per serializer variant
    multi_items: int  # items of the multi-instance task
    long_history: int  # completed loop-backs before the long-history instance is timed
    large_samples: int  # timed completes per large instance
    depth_probe: int  # loop the long-history instance up to this many completions (0: skip)
    rounds: int  # turns in which the compared figures are timed


# The long-history instance is timed after 500 loop-backs (issue 9: "500 completed tasks"), then
# looped on to 600: past the ~500 where bare SpiffWorkflow loses the task of a 2-element loop
# (engine.store searches the whole tree; LongHistoryCase.probe_depth_limit checks it).
FULL = Counts(50, 30, 10_000, 20, 50, 1000, 500, 20, 600, 5)
QUICK = Counts(3, 2, 10, 2, 3, 20, 10, 3, 0, 1)
BREAKDOWN_SAMPLES = 5  # broken-down completes per large instance


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run of every figure")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file in a temp dir)")
    parser.add_argument("--reset", action="store_true", help="drop every table of --db first")
    parser.add_argument("--finished", type=int, help="finished instances before the second measurement")
    parser.add_argument("--instances", type=int, help="10-task instances timed per database state")
    parser.add_argument("--json-out", type=Path, help="also write the JSON here")
    parser.add_argument("--profile", type=Path, help="write pyinstrument profiles of complete-task here")
    return parser.parse_args(argv)


def _counts(args) -> Counts:
    counts = QUICK if args.quick else FULL
    if args.finished is not None:
        counts = replace(counts, finished=args.finished)
    if args.instances is not None:
        counts = replace(counts, instances=args.instances)
    return counts


_began = time.perf_counter()


def _say(message: str) -> None:
    print(f"[bench {time.perf_counter() - _began:7.1f}s] {message}", file=sys.stderr, flush=True)


def _package(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # Other work on the host skews timings; the 1/5/15-minute load says how much there was.
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": {n: _package(n) for n in ("SpiffWorkflow", "SQLAlchemy", "Flask", "psycopg")},
    }


def source_revision() -> dict:
    """The commit measured, and whether engine/ or webapp/ had uncommitted changes then."""
    root = str(Path(__file__).resolve().parent.parent)

    def git(*args) -> str:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, check=True).stdout

    try:
        return {
            "commit": git("rev-parse", "--short", "HEAD").strip(),
            "uncommitted_engine_changes": bool(
                git("status", "--porcelain", "--", "engine", "webapp").strip()
            ),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_engine_changes": None}


@contextmanager
def _database(url: str | None):
    with tempfile.TemporaryDirectory(prefix="chengxin-bench-") as tmp:
        yield (url or f"sqlite:///{tmp}/bench.db"), Path(tmp) / "instance"


def _progress(done: int, total: int) -> None:
    if done == total or done % 1000 == 0:
        _say(f"  finished instances: {done}/{total}")


def _profiled(directory: Path, name: str, action) -> None:
    from pyinstrument import Profiler

    directory.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(interval=0.0005)
    with profiler:
        action()
    (directory / f"{name}.txt").write_text(profiler.output_text(unicode=True, color=False))
    _say(f"  profile written: {directory / name}.txt")


def _per_round(total: int, rounds: int) -> int:
    return max(1, round(total / rounds))


def _warm_up(bench: eo.Bench, control: eo.Bench, http: eo.HttpClient) -> None:
    _say("warm-up (spec cache, form schema, imports)")
    eo.engine_timings(bench, 1)
    eo.engine_timings(control, 1)
    eo.http_round(http, 1, eo.Operations())
    eo.bare_timings(1)
    gc.collect()


def measure_database(bench: eo.Bench, control: eo.Bench, counts: Counts, profile: Path | None) -> dict:
    """Every figure that needs the database, in the order the database grows. Figures compared
    with each other are timed in turns (rounds), so that a busy host slows them alike."""
    rounds = counts.rounds
    engine_runs = _per_round(counts.instances, rounds)
    http_runs = _per_round(counts.http_instances, rounds)
    bare_runs = _per_round(counts.bare_instances, rounds)
    engine = {"empty": eo.Operations(), "after_finished": eo.Operations(), "control": eo.Operations()}
    web = {"empty": eo.Operations(), "after_finished": eo.Operations()}
    bare, bare_after = eo.BareReference(), eo.BareReference()
    http = eo.HttpClient(bench)
    try:
        _warm_up(bench, control, http)
        _say(f"empty database, {rounds} rounds: engine API, HTTP, bare SpiffWorkflow")
        eo.interleaved(
            rounds,
            lambda: eo.engine_round(bench, engine_runs, engine["empty"]),
            lambda: eo.http_round(http, http_runs, web["empty"]),
            lambda: bare.round(bare_runs),
        )
        _say(f"filling: {counts.finished} finished instances through the engine")
        started = time.perf_counter()
        finished = eo.fill_finished(bench, counts.finished, progress=_progress)
        fill_seconds = time.perf_counter() - started
        gc.collect()
        _say(f"after {finished} finished instances, {rounds} rounds: engine, control database, HTTP, bare")
        eo.interleaved(
            rounds,
            lambda: eo.engine_round(bench, engine_runs, engine["after_finished"]),
            lambda: eo.engine_round(control, engine_runs, engine["control"]),
            lambda: eo.http_round(http, http_runs, web["after_finished"]),
            lambda: bare_after.round(bare_runs),
        )
    finally:
        http.close()
    _say("complete-task breakdown by phase")
    breakdown = eo.complete_task_breakdown(bench, counts.breakdown_instances)
    large = measure_large(bench, counts, profile)
    if profile:
        _profiled(profile, "complete_task_seq10", lambda: eo.engine_timings(bench, 5))
    return {
        "finished_instances": finished,
        "fill_seconds": round(fill_seconds, 1),
        "engine": {state: ops.summary() for state, ops in engine.items()},
        "http": {state: ops.summary() for state, ops in web.items()},
        "bare": bare.summary(),
        "bare_after_fill": bare_after.summary(),
        "breakdown": breakdown,
        "large": large,
    }


def measure_large(bench: eo.Bench, counts: Counts, profile: Path | None) -> dict:
    gc.collect()
    _say(f"large: multi-instance task over {counts.multi_items} items")
    multi = eo.MultiInstanceCase(bench, counts.multi_items)
    multi_figures = multi.figures(multi.complete_some(counts.large_samples))
    multi_figures["breakdown"] = eo.phase_breakdown(bench, lambda: multi.complete_some(BREAKDOWN_SAMPLES))
    if profile:
        _profiled(profile, "complete_task_multi_instance", lambda: multi.complete_some(5))
    multi_figures["bare"] = eo.bare_multi_instance(counts.multi_items, counts.large_samples)
    _say(f"large: a task looped back {counts.long_history} times")
    loop = eo.LongHistoryCase(bench, counts.long_history)
    loop_figures = loop.figures(loop.complete_some(counts.large_samples))
    loop_figures["breakdown"] = eo.phase_breakdown(bench, lambda: loop.complete_some(BREAKDOWN_SAMPLES))
    if profile:
        _profiled(profile, "complete_task_long_history", lambda: loop.complete_some(5))
    loop_figures["bare"] = eo.bare_long_history(counts.long_history, counts.large_samples)
    if counts.depth_probe:
        _say(f"large: looping on up to {counts.depth_probe} completions (SpiffWorkflow depth limit)")
    loop_figures["wrongly_ended_after_loop_backs"] = (
        loop.probe_depth_limit(counts.depth_probe) if counts.depth_probe else None
    )
    return {"multi_instance": multi_figures, "long_history": loop_figures}


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2)


def _ratios_of(results: dict, key: str) -> dict:
    """The ratios of one measure: "median_ms" (wall clock) or "cpu_median_ms" (this process's CPU)."""
    engine, web, bare, large = results["engine"], results["http"], results["bare"], results["large"]
    reference = engine["empty"]["complete_task"][key]
    after_reference = engine["after_finished"]["complete_task"][key]
    bare_reference = bare["state_only"]["step"][key]
    values = {
        "engine_vs_bare_state_only": _ratio(reference, bare_reference),
        "engine_vs_bare_full_spec": _ratio(reference, bare["full_spec"]["step"][key]),
        "http_vs_engine_complete_task": _ratio(web["empty"]["complete_task"][key], reference),
        "multi_instance_vs_seq10": _ratio(large["multi_instance"]["complete_task"][key], after_reference),
        "long_history_vs_seq10": _ratio(large["long_history"]["complete_task"][key], after_reference),
    }
    # The same comparison in the second window: the empty control database against the bare
    # steps timed in the same rounds (a host busy during the first window skews the first).
    for variant in ("state_only", "full_spec"):
        values[f"engine_control_vs_bare_{variant}"] = _ratio(
            engine["control"]["complete_task"][key], results["bare_after_fill"][variant]["step"][key]
        )
    for case in ("multi_instance", "long_history"):
        values[f"bare_{case}_vs_bare_seq10"] = _ratio(large[case]["bare"]["step"][key], bare_reference)
    for kind, figures in (("engine", engine), ("http", web)):
        for operation in ("start_instance", "complete_task"):
            values[f"growth_{kind}_{operation}"] = _ratio(
                figures["after_finished"][operation][key], figures["empty"][operation][key]
            )
    for operation in ("start_instance", "complete_task"):
        values[f"growth_engine_{operation}_vs_control"] = _ratio(
            engine["after_finished"][operation][key], engine["control"][operation][key]
        )
    return values


def ratios(results: dict) -> dict:
    """Wall-clock ratios; the targeted ones again in CPU time (suffix _cpu); the host's drift."""
    values = _ratios_of(results, "median_ms")
    cpu = _ratios_of(results, "cpu_median_ms")
    values.update({f"{name}_cpu": cpu[name] for name in TARGETS})
    # The bare step again after the fill: >1 means the host itself got slower meanwhile.
    values["host_drift_bare_step"] = _ratio(
        results["bare_after_fill"]["state_only"]["step"]["median_ms"],
        results["bare"]["state_only"]["step"]["median_ms"],
    )
    return values


def targets(values: dict) -> dict:
    return {
        name: {"value": values[name], "limit": limit, "met": values[name] <= limit}
        for name, limit in TARGETS.items()
    }


def run(args) -> dict:
    counts = _counts(args)
    results: dict = {
        "machine": machine(),
        "source": source_revision(),
        "counts": asdict(counts),
        "quick": args.quick,
    }
    with _database(args.db) as (url, instance_dir):
        bench = eo.open_bench(url, instance_dir, reset=args.reset)
        control = None
        try:
            control = eo.open_control(bench, instance_dir / "control")
            results["database"] = {
                "url": make_url(url).render_as_string(hide_password=True),
                "backend": bench.db.dialect.name,
                "version": eo.database_version(bench),
            }
            results.update(measure_database(bench, control, counts, args.profile))
        finally:
            if control is not None:
                control.close()
            bench.close()
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["ratios"] = ratios(results)
    results["targets"] = targets(results["ratios"])
    if args.profile:
        results["profiles"] = {"directory": str(args.profile), "pyinstrument": _package("pyinstrument")}
    return results


# --- report ---------------------------------------------------------------------------------


def _cell(figures: dict) -> str:
    return f"{figures['median_ms']:.2f} / {figures['p95_ms']:.2f} (cpu {figures['cpu_median_ms']:.2f})"


def _timing_table(results: dict) -> list[str]:
    engine, web, bare = results["engine"], results["http"], results["bare"]
    multi, loop = results["large"]["multi_instance"], results["large"]["long_history"]
    lines = [
        f"| operation (ms: median / p95 (process CPU median)) | empty database | after {results['finished_instances']} finished |",
        "|---|---|---|",
    ]
    for label, figures in (("engine", engine), ("HTTP", web)):
        for operation in ("start_instance", "complete_task"):
            lines.append(
                f"| {label} {operation} | {_cell(figures['empty'][operation])} "
                f"| {_cell(figures['after_finished'][operation])} |"
            )
    for operation in ("start_instance", "complete_task"):
        lines.append(
            f"| engine {operation}, control: empty database timed in turn | | {_cell(engine['control'][operation])} |"
        )
    return lines + [
        f"| bare SpiffWorkflow step, full spec ({bare['full_spec']['state_bytes']} B) "
        f"| {_cell(bare['full_spec']['step'])} | {_cell(results['bare_after_fill']['full_spec']['step'])} |",
        f"| bare SpiffWorkflow step, state only ({bare['state_only']['state_bytes']} B) "
        f"| {_cell(bare['state_only']['step'])} | {_cell(results['bare_after_fill']['state_only']['step'])} |",
        f"| engine complete_task, multi-instance over {multi['items']} items ({multi['state_bytes']} B) "
        f"| | {_cell(multi['complete_task'])} |",
        f"| bare step, multi-instance over {multi['items']} items | | {_cell(multi['bare']['step'])} |",
        f"| engine complete_task after {loop['completed_before']} loop-backs ({loop['state_bytes']} B) "
        f"| | {_cell(loop['complete_task'])} |",
        f"| bare step after {loop['completed_before']} loop-backs | | {_cell(loop['bare']['step'])} |",
    ]


def _ratio_table(results: dict) -> list[str]:
    lines = ["| ratio | value | target | met |", "|---|---|---|---|"]
    for name, value in results["ratios"].items():
        target = results["targets"].get(name)
        if target:
            lines.append(f"| {name} | {value} | ≤ {target['limit']} | {'yes' if target['met'] else 'NO'} |")
        else:
            lines.append(f"| {name} | {value} | (information) | |")
    return lines


def _breakdown_table(results: dict) -> list[str]:
    columns = {
        "10-task": results["breakdown"],
        "multi-instance": results["large"]["multi_instance"]["breakdown"],
        "long history": results["large"]["long_history"]["breakdown"],
    }
    lines = [
        "| complete_task phase: mean ms wall (CPU) | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for phase in (*eo.PHASE_ORDER, "other"):
        cells = [
            f"{c['phases_mean_ms'][phase]:.2f} ({c['phases_cpu_mean_ms'][phase]:.2f})"
            for c in columns.values()
        ]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    totals = [f"{c['total_mean_ms']:.2f} ({c['cpu_total_mean_ms']:.2f})" for c in columns.values()]
    lines.append("| **total** | " + " | ".join(totals) + " |")
    lines.append(
        "| SQL statements / driver ms | "
        + " | ".join(
            f"{c['sql_statements_per_complete']} / {c['sql_driver_mean_ms']:.2f}" for c in columns.values()
        )
        + " |"
    )
    return lines


def markdown(results: dict) -> str:
    """The figures as Markdown tables (ms as median / p95)."""
    host = results["machine"]
    header = (
        f"{results['database']['version']}; {host['nproc']} × {host['cpu_model']}, Python {host['python']}, "
        f"load {host['load_average'][0]} → {results['load_average_at_end'][0]}"
    )
    return "\n".join(
        [header, ""]
        + _timing_table(results)
        + [""]
        + _ratio_table(results)
        + [""]
        + _breakdown_table(results)
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        results = run(args)
    except eo.BenchError as exc:
        raise SystemExit(f"bench: {exc}") from None
    text = json.dumps(results, ensure_ascii=False, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    print(text)
    print()
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
