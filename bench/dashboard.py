"""`python -m bench.dashboard`: the managers' dashboard and list queries at 100,000 instances on PostgreSQL.

    python -m bench.dashboard --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_monitoring
    python -m bench.dashboard --db ... --reuse             # time again on the rows already loaded
    python -m bench.dashboard --db ... --instances 10000 --plans-out plans.txt --json-out results.json

How the rows are made: a fresh schema; the demo organisation and credit archive; four flows
(the fixture review flow deployed under the bureau's four process keys); per flow, six
instances run through the engine at chosen instants (open and unclaimed, open and claimed,
at the second step, rejected, approved, terminated). Their rows in process_instances,
human_tasks, task_candidates and events are the templates: the bulk loader (COPY) copies
every column value, giving each copy new ids, a new start instant (spread over two years;
recent matters are more often open), the template's intervals stretched by a random factor,
a business key and subject of its own, and a hash chain recomputed for its events. States
are the templates' encrypted states (nothing here loads them).

Then every query is timed (warm cache, `--repeat` runs each in a fresh transaction) and
EXPLAIN (ANALYZE, BUFFERS) is taken of every SQL statement the dashboard and the lists run.
Progress goes to stderr; stdout holds the JSON, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pkgutil
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path

import time_machine
from sqlalchemy import event, inspect, select, text
from sqlalchemy.engine import Engine

import engine
from engine import audit, definitions, monitoring, runtime
from engine.config import Settings
from engine.db import Base, make_engine, make_session_factory, transaction
from engine.models import Event, HumanTask, ProcessInstance, TaskCandidate, User
from engine.users import actor_for, seed_demo

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
FLOWS = {
    "complaint_rectification": "投诉举报→整改",
    "credit_objection": "信用信息异议→更正/撤销",
    "credit_repair": "信用修复",
    "judicial_suggestion": "司法建议/检察建议回复",
}
SHAPES = ("open_first", "open_claimed", "open_second", "done_rejected", "done_approved", "terminated")
SUBJECTS = (
    "化工有限公司",
    "烟花爆竹经营部",
    "矿业有限公司",
    "建材厂",
    "危化品仓储公司",
    "加油站",
    "物流有限公司",
)
TARGET_MS = {"dashboard": 300.0}
TIME_COLUMNS = {
    "process_instances": ("started_at", "ended_at", "due_at", "updated_at"),
    "human_tasks": ("created_at", "due_at", "warn_at", "completed_at"),
    "events": ("at",),
}

_began = time.perf_counter()


def say(message: str) -> None:
    print(f"[dashboard {time.perf_counter() - _began:7.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--db", required=True, help="PostgreSQL URL (its public schema is dropped unless --reuse)"
    )
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per query")
    parser.add_argument("--reuse", action="store_true", help="keep the rows already loaded; only time")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--plans-out", type=Path, help="write the EXPLAIN ANALYZE plans here")
    return parser.parse_args(argv)


# --- schema and templates ----------------------------------------------------------------


def import_all_tables() -> None:
    """Every engine module that defines a table, so create_all makes the whole schema."""
    for module in pkgutil.iter_modules(engine.__path__):
        if module.name not in ("migrations",):
            import_module(f"engine.{module.name}")


def fresh_schema(db: Engine) -> None:
    import_all_tables()
    with db.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    Base.metadata.create_all(db)


def deploy_flows(sessions) -> None:
    shared = [
        (n, (FIXTURES / n).read_bytes())
        for n in ("simple_start.form", "simple_review.form", "simple_confirm.form")
    ]
    xml = (FIXTURES / "simple_review.bpmn").read_text()
    with transaction(sessions) as session:
        for key, name in FLOWS.items():
            bpmn = xml.replace('id="simple_review" name="简单审核"', f'id="{key}" name="{name}"')
            definitions.deploy(session, [(f"{key}.bpmn", bpmn.encode()), *shared], user="analyst")


def _local(day_offset: float, hour: int) -> datetime:
    base = datetime(2026, 3, 2, hour, 0, tzinfo=Settings().tzinfo)  # a Monday
    return base + timedelta(days=day_offset)


class Runner:
    def __init__(self, sessions, settings):
        self.sessions, self.settings = sessions, settings

    def __call__(self, when: datetime, username: str, operation, *args, **kwargs):
        with time_machine.travel(when, tick=False), transaction(self.sessions) as session:
            user = session.scalar(select(User).where(User.username == username))
            return operation(runtime.Context(session, actor_for(user), self.settings), *args, **kwargs)

    def open_task(self, instance_id: int) -> int:
        with self.sessions() as session:
            return session.scalar(
                select(HumanTask.id).where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
            )


def make_templates(sessions, settings) -> dict[tuple[str, str], int]:
    """Per flow and shape, one instance run through the engine: (key, shape) -> instance id."""
    run = Runner(sessions, settings)
    made = {}
    for key in FLOWS:
        for shape in SHAPES:
            variables = {"title": f"{key} {shape}", "subject_name": f"许昌示例{shape}公司", "amount": 1}
            instance = run(_local(0, 9), "registrar", runtime.start_instance, key, variables=variables)
            made[(key, shape)] = instance.id
            if shape == "open_claimed":
                run(_local(0, 11), "registrar", runtime.claim_task, run.open_task(instance.id))
            if shape in ("open_second", "done_approved"):
                task = run.open_task(instance.id)
                run(_local(2, 10), "registrar", runtime.complete_task, task, {"decision": "approve"}, "同意")
            if shape == "done_approved":
                task = run.open_task(instance.id)
                run(_local(3, 16), "chief", runtime.complete_task, task, {"confirmed": True}, "已复核")
            if shape == "done_rejected":
                task = run.open_task(instance.id)
                run(
                    _local(1, 15),
                    "registrar",
                    runtime.complete_task,
                    task,
                    {"decision": "reject"},
                    "不予通过",
                )
            if shape == "terminated":
                run(_local(4, 10), "director", runtime.terminate_instance, instance.id, "重复登记")
    return made


def _row(obj) -> dict:
    return {c.key: getattr(obj, c.key) for c in inspect(obj).mapper.column_attrs}


def capture(sessions, template_ids: dict) -> dict:
    """The templates' rows as plain dicts (instance, tasks with candidates, events)."""
    captured = {}
    with sessions() as session:
        for (key, shape), instance_id in template_ids.items():
            instance = session.get(ProcessInstance, instance_id)
            tasks = list(
                session.scalars(
                    select(HumanTask).where(HumanTask.instance_id == instance_id).order_by(HumanTask.id)
                )
            )
            candidates = list(
                session.scalars(select(TaskCandidate).where(TaskCandidate.task_id.in_([t.id for t in tasks])))
            )
            events = list(
                session.scalars(select(Event).where(Event.instance_id == instance_id).order_by(Event.id))
            )
            captured[(key, shape)] = {
                "instance": _row(instance),
                "tasks": [_row(t) for t in tasks],
                "candidates": [_row(c) for c in candidates],
                "events": [_row(e) for e in events],
            }
    return captured


# --- bulk load ------------------------------------------------------------------------------


def _columns(table: str) -> list[str]:
    return [c.name for c in Base.metadata.tables[table].columns]


def _shifted(row: dict, table: str, origin: datetime, start: datetime, stretch: float) -> dict:
    out = dict(row)
    for name in TIME_COLUMNS[table]:
        value = row.get(name)
        if value is not None:
            out[name] = start + (value - origin) * stretch
    return out


def _choose_shape(rng: random.Random, age_days: float) -> str:
    if age_days < 30:
        weights = (30, 15, 15, 15, 22, 3)
    elif age_days < 120:
        weights = (4, 2, 3, 30, 57, 4)
    else:
        weights = (1, 1, 1, 30, 62, 5)
    return rng.choices(SHAPES, weights)[0]


def _as_copy_value(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _next_id(conn, table: str) -> int:
    return (conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0] or 0) + 1


def bulk_load(db: Engine, captured: dict, count: int, now: datetime, seed: int) -> dict:
    """COPY `count` instances made from the templates; returns rows written per table."""
    rng = random.Random(seed)
    keys = list(FLOWS)
    tables = {t: _columns(t) for t in ("process_instances", "human_tasks", "task_candidates", "events")}
    raw = db.raw_connection()
    conn = raw.driver_connection
    written = dict.fromkeys(tables, 0)
    try:
        ids = {t: _next_id(conn, t) for t in ("process_instances", "human_tasks", "events")}
        buffers = {t: [] for t in tables}
        for n in range(count):
            age = rng.random() * 730
            start = now - timedelta(days=age, hours=rng.random() * 10)
            key = rng.choice(keys)
            template = captured[(key, _choose_shape(rng, age))]
            stretch = rng.uniform(0.3, 4.0)
            origin = template["instance"]["started_at"]
            instance_id = ids["process_instances"]
            ids["process_instances"] += 1
            instance = _shifted(template["instance"], "process_instances", origin, start, stretch)
            prefix = runtime.BUSINESS_KEY_PREFIX.get(key, "LC")
            instance.update(
                id=instance_id,
                business_key=f"{prefix}{start.year}{instance_id:06d}",
                subject=f"许昌{rng.choice('甲乙丙丁戊己庚辛壬癸')}{n % 997}{rng.choice(SUBJECTS)}",
                lock_version=template["instance"]["lock_version"],
            )
            if instance["ended_at"] and instance["ended_at"] > now:
                instance["ended_at"] = now  # a finished matter ended before the present
            task_ids = {}
            for task in template["tasks"]:
                row = _shifted(task, "human_tasks", origin, start, stretch)
                task_ids[task["id"]] = ids["human_tasks"]
                row.update(
                    id=ids["human_tasks"],
                    instance_id=instance_id,
                    task_guid=str(uuid.uuid4()),
                    business_key=instance["business_key"],
                    subject=instance["subject"],
                )
                ids["human_tasks"] += 1
                buffers["human_tasks"].append(row)
            for candidate in template["candidates"]:
                buffers["task_candidates"].append({**candidate, "task_id": task_ids[candidate["task_id"]]})
            prev = ""
            for ev in template["events"]:
                row = _shifted(ev, "events", origin, start, stretch)
                row.update(id=ids["events"], instance_id=instance_id, task_id=task_ids.get(ev["task_id"]))
                ids["events"] += 1
                row["prev_hash"] = prev
                row["hash"] = prev = audit._content_hash(prev, Event(**{k: row[k] for k in row}))
                buffers["events"].append(row)
            # The instance row holds the head of its audit chain, as the engine keeps it.
            instance["last_event_hash"] = prev
            buffers["process_instances"].append(instance)
            if len(buffers["process_instances"]) >= 5000 or n == count - 1:
                for table, rows in buffers.items():
                    _copy(conn, table, tables[table], rows)
                    written[table] += len(rows)
                    rows.clear()
                conn.commit()
                say(f"loaded {n + 1} / {count} instances")
        for table in ("process_instances", "human_tasks", "events"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            )
        conn.commit()
    finally:
        raw.close()
    return written


def _copy(conn, table: str, columns: list[str], rows: list[dict]) -> None:
    if not rows:
        return
    with conn.cursor() as cursor:
        quoted = ", ".join(f'"{c}"' for c in columns)  # "user" is a reserved word
        statement = f"COPY {table} ({quoted}) FROM STDIN"
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([_as_copy_value(row.get(c)) for c in columns])


# --- timing -----------------------------------------------------------------------------------


def timed(sessions, settings, operation: Callable, repeat: int) -> dict:
    """Milliseconds of `operation(ctx)`, each run in a fresh transaction, after two warm-up runs."""
    samples = []
    for i in range(repeat + 2):
        with sessions() as session:
            ctx = runtime.Context(
                session, actor_for(session.scalar(select(User).where(User.username == "director"))), settings
            )
            began = time.perf_counter()
            operation(ctx)
            elapsed = (time.perf_counter() - began) * 1000
        if i >= 2:
            samples.append(elapsed)
    samples.sort()
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[min(len(samples) - 1, math.ceil(0.95 * len(samples)) - 1)], 1),
        "mean_ms": round(statistics.fmean(samples), 1),
        "min_ms": round(samples[0], 1),
        "max_ms": round(samples[-1], 1),
    }


def queries_to_time(now: datetime) -> dict[str, Callable]:
    """Name -> operation(ctx): the dashboard, its parts, the summary and the lists."""
    instances = monitoring.InstanceFilter.from_mapping
    tasks = monitoring.TaskFilter.from_mapping
    month_ago = (now - timedelta(days=30)).date().isoformat()
    this_monday = now.astimezone(Settings().tzinfo).date() - timedelta(
        days=now.astimezone(Settings().tzinfo).weekday()
    )
    first_week = this_monday - timedelta(weeks=monitoring.WEEKS - 1)
    return {
        "dashboard": lambda ctx: monitoring.dashboard(ctx, now),
        "dashboard.open_instances": lambda ctx: monitoring.open_instances(ctx, now),
        "dashboard.tasks_by_group": lambda ctx: monitoring.late_tasks_by_group(ctx, now),
        "dashboard.tasks_by_person": lambda ctx: monitoring.late_tasks_by_person(ctx, now),
        "dashboard.weeks": lambda ctx: monitoring.weekly_throughput(ctx, first_week),
        "dashboard.step_durations": lambda ctx: monitoring.step_durations(ctx, first_week, now),
        "dashboard.credit": lambda ctx: monitoring.credit_counts(ctx),
        "summary": lambda ctx: monitoring.summary(ctx, now),
        "list.all": lambda ctx: monitoring.list_instances(ctx, instances({}), now=now),
        "list.flow_running": lambda ctx: monitoring.list_instances(
            ctx, instances({"process_key": "credit_repair", "status": "running"}), now=now
        ),
        "list.overdue": lambda ctx: monitoring.list_instances(ctx, instances({"overdue": "true"}), now=now),
        "list.started_last_30_days": lambda ctx: monitoring.list_instances(
            ctx, instances({"started_from": month_ago}), now=now
        ),
        "list.subject_contains": lambda ctx: monitoring.list_instances(
            ctx, instances({"subject": "矿业"}), now=now
        ),
        "list.page_200": lambda ctx: monitoring.list_instances(ctx, instances({}), page=200, now=now),
        "tasks.group_overdue": lambda ctx: monitoring.list_tasks(
            ctx, tasks({"group": "office", "sla": "overdue"}), now=now
        ),
        "heatmap.latest_version": lambda ctx: monitoring.heatmap(ctx, "complaint_rectification", now=now),
    }


# --- plans -------------------------------------------------------------------------------------


def capture_statements(db: Engine, sessions, settings, operation: Callable) -> list[tuple[str, dict]]:
    seen = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(db, "before_cursor_execute", remember)
    try:
        with sessions() as session:
            user = session.scalar(select(User).where(User.username == "director"))
            seen.clear()
            operation(runtime.Context(session, actor_for(user), settings))
    finally:
        event.remove(db, "before_cursor_execute", remember)
    return seen


def explain(db: Engine, statement: str, parameters) -> str:
    raw = db.raw_connection()
    try:
        with raw.driver_connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            return "\n".join(r[0] for r in cursor.fetchall())
    finally:
        raw.close()


def _short(statement: str) -> str:
    return " ".join(statement.split())[:160]


def plans(db: Engine, sessions, settings, operations: dict[str, Callable]) -> dict[str, list[dict]]:
    found = {}
    for name in (
        "dashboard",
        "summary",
        "list.all",
        "list.overdue",
        "list.subject_contains",
        "tasks.group_overdue",
        "heatmap.latest_version",
    ):
        found[name] = []
        for statement, parameters in capture_statements(db, sessions, settings, operations[name]):
            if statement.lstrip().startswith("SELECT process_definitions."):
                continue  # the list of process names: a few rows
            plan = explain(db, statement, parameters)
            execution = next((line for line in plan.splitlines() if "Execution Time" in line), "")
            found[name].append({"sql": _short(statement), "execution": execution.strip(), "plan": plan})
    return found


# --- main --------------------------------------------------------------------------------------


def table_counts(db: Engine) -> dict:
    with db.connect() as conn:
        return {
            t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar()
            for t in ("process_instances", "human_tasks", "task_candidates", "events", "credit_records")
        }


def machine(db: Engine) -> dict:
    with db.connect() as conn:
        server = conn.execute(text("SELECT version()")).scalar()
        settings = {
            n: conn.execute(text(f"SHOW {n}")).scalar()
            for n in ("shared_buffers", "work_mem", "random_page_cost")
        }
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "database": server.split(",")[0],
        "database_settings": settings,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def markdown(results: dict) -> str:
    lines = ["| query | p50 ms | p95 ms | max ms |", "|---|---:|---:|---:|"]
    for name, figures in results["timings"].items():
        target = TARGET_MS.get(name)
        mark = f" (target ≤ {target:.0f})" if target else ""
        lines.append(f"| {name}{mark} | {figures['p50_ms']} | {figures['p95_ms']} | {figures['max_ms']} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    db = make_engine(args.db)
    if db.dialect.name != "postgresql":
        raise SystemExit("bench.dashboard measures PostgreSQL: give a postgresql+psycopg:// URL")
    with tempfile.TemporaryDirectory(prefix="chengxin-dash-") as tmp:
        settings = Settings(database_url=args.db, instance_dir=Path(tmp), secret_key="bench-secret")
        sessions = make_session_factory(db)
        now = datetime.now(UTC)
        written = None
        if not args.reuse:
            say("fresh schema, demo users, credit archive, four flows")
            fresh_schema(db)
            from engine.demo_archive import seed_demo_archive

            with transaction(sessions) as session:
                seed_demo(session)
                seed_demo_archive(session)
            deploy_flows(sessions)
            say("template instances through the engine")
            captured = capture(sessions, make_templates(sessions, settings))
            say(f"bulk-loading {args.instances} instances")
            written = bulk_load(db, captured, args.instances, now, args.seed)
        else:
            import_all_tables()
        with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        operations = queries_to_time(now)
        timings = {}
        for name, operation in operations.items():
            timings[name] = timed(sessions, settings, operation, args.repeat)
            say(f"{name}: p50 {timings[name]['p50_ms']} ms, p95 {timings[name]['p95_ms']} ms")
        found = plans(db, sessions, settings, operations)
        results = {
            "machine": machine(db),
            "rows": table_counts(db),
            "written": written,
            "timings": timings,
            "targets_ms": TARGET_MS,
            "dashboard_target_met": timings["dashboard"]["p95_ms"] <= TARGET_MS["dashboard"],
            "plans": {
                name: [{k: v for k, v in p.items() if k != "plan"} for p in ps] for name, ps in found.items()
            },
        }
    if args.plans_out:
        with args.plans_out.open("w") as out:
            for name, items in found.items():
                for item in items:
                    out.write(f"## {name}\n{item['sql']}\n{item['plan']}\n\n")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str))
    print(json.dumps(results, ensure_ascii=False, indent=2, default=str))
    print()
    print(markdown(results))
    db.dispose()
    return results


if __name__ == "__main__":
    main()
