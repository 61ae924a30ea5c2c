"""`python -m bench.sizes`: the inbox, the claimable list, the instance lists and the summary at 1k…1M instances.

    python -m bench.sizes --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_sizes
    python -m bench.sizes --db ... --sizes 1000,10000,100000,1000000 --plans-out plans.txt

The schema of --db is DROPPED (with --reuse, the rows a previous run left are timed again).
Rows come from bench.dashboard's loader (template instances run through the engine, then
COPY), grown step by step to each size; after each step VACUUM ANALYZE,
then every API call below is made --repeat times through the Flask app (bearer token, the whole
request: auth, query, presenters, JSON) and EXPLAIN (ANALYZE, BUFFERS) is taken of the list
statements it ran. Deep pages are read both ways: by `page` (offset) and by `cursor` (keyset,
the cursor taken once, untimed, from the page before). A size is skipped when loading it is
projected to take over --max-load-minutes.
Progress goes to stderr; stdout holds the JSON, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event, select, text

from bench import dashboard
from bench.http_load import machine
from engine.config import Settings
from engine.db import make_engine, make_session_factory, transaction
from engine.models import User
from engine.users import seed_demo

INBOX_USER = "registrar"  # office: assigned the "open_claimed" matters, candidate for the first review
MANAGER = "director"
PER_PAGE = 50
TARGET_INBOX_P95_MS = 50.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


CLAIMABLE = "/api/v1/tasks?scope=claimable"
COMPLETED = "/api/v1/process-instances?status=completed"


def _with_cursor(path: str, cursor: str | None) -> str:
    return f"{path}&per_page={PER_PAGE}" + (f"&cursor={cursor}" if cursor else "")


def calls(deep: dict) -> dict[str, tuple[str, str]]:
    """Name -> (user, path) of every timed API call; `deep` holds the 90 % pages and cursors."""
    return {
        "inbox": (INBOX_USER, "/api/v1/tasks?scope=mine"),
        "claimable": (INBOX_USER, CLAIMABLE),
        "claimable.deep_page": (INBOX_USER, f"{CLAIMABLE}&page={deep['tasks_page']}&per_page={PER_PAGE}"),
        "claimable.deep_cursor": (INBOX_USER, _with_cursor(CLAIMABLE, deep["tasks_cursor"])),
        "instances.all": (MANAGER, "/api/v1/process-instances"),
        "instances.flow_running": (
            MANAGER,
            "/api/v1/process-instances?process_key=credit_repair&status=running",
        ),
        "instances.completed_deep_page": (
            MANAGER,
            f"{COMPLETED}&page={deep['instances_page']}&per_page={PER_PAGE}",
        ),
        "instances.completed_deep_cursor": (MANAGER, _with_cursor(COMPLETED, deep["instances_cursor"])),
        "stats.summary": (MANAGER, "/api/v1/stats/summary"),
        "monitor.dashboard": (MANAGER, "/api/v1/monitor/dashboard"),
    }


class Api:
    """The Flask test client with one bearer token per user; remembers SQL of the last request."""

    def __init__(self, settings: Settings):
        from webapp import create_app
        from webapp.auth import issue_token
        from webapp.database import session

        self.app = create_app(settings, TESTING=True)
        self.client = self.app.test_client()
        self.db = self.app.extensions["chengxin"]["engine"]
        self.tokens = {}
        with self.app.app_context():
            for username in (INBOX_USER, MANAGER):
                user = session().scalar(select(User).where(User.username == username))
                self.tokens[username] = issue_token(user)[0]
        self.statements: list[tuple[str, dict]] = []
        event.listen(self.db, "before_cursor_execute", self._remember)

    def _remember(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append((statement, parameters))

    def get(self, user: str, path: str) -> tuple[dict, float]:
        """(JSON body, milliseconds); raises RuntimeError on a non-200 answer."""
        self.statements.clear()
        began = time.perf_counter()
        response = self.client.get(path, headers={"Authorization": f"Bearer {self.tokens[user]}"})
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.get_data(as_text=True)[:300]}")
        return response.get_json(), elapsed

    def close(self) -> None:
        event.remove(self.db, "before_cursor_execute", self._remember)
        self.db.dispose()


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 1)


def time_call(api: Api, user: str, path: str, repeat: int) -> dict:
    """Two warm-up requests, then `repeat` timed ones; the last request's SQL stays in api.statements."""
    samples = []
    for i in range(repeat + 2):
        body, elapsed = api.get(user, path)
        if i >= 2:
            samples.append(elapsed)
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": p95(samples),
        "total": body.get("total"),
        "items": len(body.get("items", [])),
        "selects": sum(1 for sql, _ in api.statements if sql.lstrip().upper().startswith(("SELECT", "WITH"))),
    }


def list_statements(api: Api) -> list[tuple[str, dict]]:
    """The SELECTs of the last request on the big tables (not the user and group lookups)."""
    big = ("human_tasks", "process_instances", "task_candidates", "events")
    return [
        (sql, params)
        for sql, params in api.statements
        if sql.lstrip().upper().startswith(("SELECT", "WITH")) and any(t in sql for t in big)
    ]


def plan_summary(plan: str) -> dict:
    lines = plan.splitlines()
    execution = next((line.strip() for line in lines if "Execution Time" in line), "")
    nodes = [
        line.strip().split("  (")[0].lstrip("-> ")
        for line in lines
        if ("Scan" in line or "Sort" in line or "Limit" in line) and "(" in line
    ]
    return {"execution": execution, "nodes": nodes[:6]}


def cursor_to(api: Api, user: str, path: str, page: int) -> str | None:
    """The cursor that continues `path` at `page` (the page before read once by offset)."""
    if page <= 1:
        return None
    body, _ = api.get(user, f"{path}&page={page - 1}&per_page={PER_PAGE}")
    return body["next_cursor"]


def deep_pages(api: Api) -> dict:
    """The pages at 90 % depth of the claimable and completed lists, and cursors to them."""
    probe_tasks, _ = api.get(INBOX_USER, f"{CLAIMABLE}&per_page=1")
    probe_instances, _ = api.get(MANAGER, f"{COMPLETED}&per_page=1")
    tasks_page = max(1, int(probe_tasks["total"] * 0.9 / PER_PAGE))
    instances_page = max(1, int(probe_instances["total"] * 0.9 / PER_PAGE))
    return {
        "tasks_page": tasks_page,
        "tasks_cursor": cursor_to(api, INBOX_USER, CLAIMABLE, tasks_page),
        "instances_page": instances_page,
        "instances_cursor": cursor_to(api, MANAGER, COMPLETED, instances_page),
    }


def measure_size(api: Api, db, repeat: int, plans_out) -> dict:
    """Timings and plans of every call at the current size."""
    figures = {}
    deep = deep_pages(api)
    for name, (user, path) in calls(deep).items():
        figures[name] = time_call(api, user, path, repeat)
        figures[name]["plans"] = []
        for sql, params in list_statements(api):
            plan = dashboard.explain(db, sql, params)
            figures[name]["plans"].append({"sql": dashboard._short(sql), **plan_summary(plan)})
            if plans_out:
                plans_out.write(f"## {name}\n{dashboard._short(sql)}\n{plan}\n\n")
        say(
            f"  {name}: p50 {figures[name]['p50_ms']} ms, p95 {figures[name]['p95_ms']} ms,"
            f" {figures[name]['selects']} SELECTs, load {os.getloadavg()[0]:.1f}"
        )
    return figures


def prepare(db, sessions, settings) -> dict:
    """Fresh schema, demo organisation and archive, the four flows, the captured template rows."""
    from engine.demo_archive import seed_demo_archive

    dashboard.fresh_schema(db)
    with transaction(sessions) as session:
        seed_demo(session)
        seed_demo_archive(session)
    dashboard.deploy_flows(sessions)
    return dashboard.capture(sessions, dashboard.make_templates(sessions, settings))


def vacuum(db) -> None:
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def markdown(report: dict) -> str:
    names = list(next(iter(report["sizes"].values()))["calls"]) if report["sizes"] else []
    lines = ["| call | " + " | ".join(f"{s} p50 / p95 ms" for s in report["sizes"]) + " |"]
    lines.append("|---|" + "---:|" * len(report["sizes"]))
    for name in names:
        cells = [
            f"{size['calls'][name]['p50_ms']} / {size['calls'][name]['p95_ms']}"
            for size in report["sizes"].values()
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="PostgreSQL URL; its schema is DROPPED unless --reuse")
    parser.add_argument("--reuse", action="store_true", help="only time the calls on the rows already loaded")
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--max-load-minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plans-out", type=Path)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    args.sizes = [int(n) for n in args.sizes.split(",")]
    return args


def grow_and_measure(db, settings, args, report: dict, plans_out) -> Api:
    """Fresh schema, then load up to each of --sizes and time the calls there."""
    sessions = make_session_factory(db)
    say("fresh schema, demo organisation, template instances")
    captured = prepare(db, sessions, settings)
    now = datetime.now(UTC)
    loaded, seconds_per_instance = 0, None
    api = Api(settings)
    for size in args.sizes:
        missing = size - loaded
        if seconds_per_instance and missing * seconds_per_instance > args.max_load_minutes * 60:
            projected = round(missing * seconds_per_instance / 60, 1)
            report["skipped"][size] = f"loading projected at {projected} min"
            say(f"skip {size}: {report['skipped'][size]}")
            continue
        say(f"loading up to {size} instances")
        began = time.perf_counter()
        dashboard.bulk_load(db, captured, missing, now, args.seed + size)
        load_s = time.perf_counter() - began
        seconds_per_instance = load_s / missing
        loaded = size
        vacuum(db)
        if plans_out:
            plans_out.write(f"# {size} instances\n\n")
        report["sizes"][size] = {
            "load_s": round(load_s, 1),
            "rows": dashboard.table_counts(db),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "calls": measure_size(api, db, args.repeat, plans_out),
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }
    return api


def measure_loaded(api: Api, db, args, report: dict, plans_out) -> None:
    """--reuse: time the calls again on the rows a previous run left (no schema change)."""
    rows = dashboard.table_counts(db)
    size = rows["process_instances"]
    say(f"measuring the {size} instances already loaded")
    if plans_out:
        plans_out.write(f"# {size} instances (reused)\n\n")
    report["sizes"][size] = {
        "rows": rows,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "calls": measure_size(api, db, args.repeat, plans_out),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    db = make_engine(args.db)
    if db.dialect.name != "postgresql":
        raise SystemExit("bench.sizes measures PostgreSQL: give a postgresql+psycopg:// URL")
    report = {"machine": machine(), "sizes": {}, "skipped": {}}
    plans_out = args.plans_out.open("w") if args.plans_out else None
    with tempfile.TemporaryDirectory(prefix="chengxin-sizes-") as tmp:
        settings = Settings(database_url=args.db, instance_dir=Path(tmp), secret_key="bench-secret")
        if args.reuse:
            api = Api(settings)
            measure_loaded(api, db, args, report, plans_out)
        else:
            api = grow_and_measure(db, settings, args, report, plans_out)
        api.close()
    if plans_out:
        plans_out.close()
    biggest = report["sizes"][max(report["sizes"])]["calls"]["inbox"] if report["sizes"] else None
    report["inbox_target"] = {
        "target_p95_ms": TARGET_INBOX_P95_MS,
        "at": max(report["sizes"]) if report["sizes"] else None,
        "measured_p95_ms": biggest and biggest["p95_ms"],
        "met": bool(biggest and biggest["p95_ms"] <= TARGET_INBOX_P95_MS),
    }
    out = json.dumps(report, ensure_ascii=False, indent=2, default=str)
    print(out)
    print()
    print(markdown(report))
    if args.json_out:
        args.json_out.write_text(out)
    db.dispose()
    return report


if __name__ == "__main__":
    main()
