"""`python -m bench.http_load`: start-instance and complete-task through a real gunicorn, 1/4/16 users.

    python -m bench.http_load --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_http
    python -m bench.http_load --db sqlite --users 1,4,16 --seconds 20 --workers 2 --threads 4
    python -m bench.http_load --db ... --worker-class sync --workers 5   # the former setting
    python -m bench.http_load --db ... --keep-server 60     # leave gunicorn up (for py-spy)

What it does: a fresh schema (PostgreSQL: the schema of the database in --db is DROPPED; SQLite:
a new file in a temporary folder), the demo organisation plus `load01…load16` (groups office and
section_chiefs, so every load user may start, do the first review and the confirmation), the
fixture flow simple_review with its forms deployed through the engine. Then gunicorn
(`webapp.wsgi:app`; by default as deploy/chengxin-web.service runs it: gthread workers, one per
core, 4 threads each; --worker-class sync for sync workers) on 127.0.0.1 and a random port,
and per concurrency level N users, each a thread with one keep-alive http.client connection,
loop for --seconds (or --iterations each): start an instance, complete the first review,
complete the confirmation. Every fifth iteration a user also races another user for the
task that user has just been given, so 409s happen and the final check means something.

The check (no lost update): no task answered 200 to two completes; the completed human tasks in
the database are exactly the tasks that answered 200; every started instance exists; instances
whose both tasks answered 200 are `completed`; one `completed` audit event per completed task.
Progress goes to stderr; stdout holds the JSON, then a Markdown table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select, text

from engine import definitions
from engine.config import Settings
from engine.db import Base, make_engine, make_session_factory, transaction
from engine.models import Event, HumanTask, ProcessInstance
from engine.users import DEMO_PASSWORD, create_user, hash_password, seed_demo

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
FLOW_FILES = ("simple_review.bpmn", "simple_start.form", "simple_review.form", "simple_confirm.form")
PROCESS_KEY = "simple_review"
SECRET_KEY = "bench-http-load-secret"
LOAD_GROUPS = ["office", "section_chiefs"]
START_BODY = {"process_key": PROCESS_KEY, "variables": {"title": "压测事项", "amount": 1}}
REVIEW_BODY = {"data": {"decision": "approve", "opinion": "同意"}}
CONFIRM_BODY = {"data": {"confirmed": True, "opinion": "已复核"}}
RACE_EVERY = 5
TARGETS = {"complete_p95_ms_at_4_users_postgresql": 50.0, "completed_tasks_per_s_at_16_users": 150.0}


class BenchError(RuntimeError):
    """The server or the database did not behave as the benchmark expects."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_usernames(count: int) -> list[str]:
    return [f"load{n:02d}" for n in range(1, count + 1)]


# --- database and server ------------------------------------------------------------------


def database_url(db: str, folder: Path) -> str:
    """--db as a SQLAlchemy URL: "sqlite" means a new file in `folder`."""
    return f"sqlite:///{folder / 'bench_http.db'}" if db == "sqlite" else db


def fresh_schema(url: str) -> None:
    """An empty schema: PostgreSQL's public schema is dropped and created again."""
    from bench.dashboard import import_all_tables

    import_all_tables()
    db = make_engine(url)
    if db.dialect.name == "postgresql":
        with db.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    Base.metadata.create_all(db)
    db.dispose()


def prepare(url: str, instance_dir: Path, users: int, extra_files: list[tuple[str, bytes]] = ()) -> Settings:
    """Fresh schema, demo organisation, load users and the deployed flow; the settings to serve with."""
    settings = Settings.from_env(database_url=url, instance_dir=instance_dir, secret_key=SECRET_KEY)
    fresh_schema(url)
    sessions = make_session_factory(make_engine(url))
    password_hash = hash_password(DEMO_PASSWORD)
    files = [(name, (FIXTURES / name).read_bytes()) for name in FLOW_FILES] + list(extra_files)
    with transaction(sessions) as session:
        seed_demo(session, password_hash=password_hash)
        for username in load_usernames(users):
            create_user(session, username, DEMO_PASSWORD, groups=LOAD_GROUPS, password_hash=password_hash)
        definitions.deploy(session, files, user="analyst", note="HTTP 压测")
    return settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(settings: Settings) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "CHENGXIN_INSTANCE": str(settings.instance_dir),
        "CHENGXIN_SECRET_KEY": settings.secret_key,
        "PYTHONPATH": str(ROOT),
    }


# The server as deploy/chengxin-web.service runs it. On 2 cores with PostgreSQL, 2 gthread
# workers x 4 threads completed 67-73 tasks/s at 16 users against 27-54 for 5 sync workers
# (same code, alternating runs), at 13-16 ms of worker CPU per task against 18-21: a thread
# waiting on a database round trip leaves the core to another request of its process, and fewer
# processes keep their caches warm (5 gthread workers of 1 thread measured like 5 sync ones).
# SQLite: no difference (its single writer is the limit).
WORKER_CLASS = "gthread"
THREADS = 4


def default_workers() -> int:
    return os.cpu_count() or 1


def gunicorn_command(
    port: int, workers: int, threads: int = THREADS, worker_class: str = WORKER_CLASS
) -> list[str]:
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    command += ["-k", worker_class]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    return command + ["--log-level", "warning", "webapp.wsgi:app"]


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Raises BenchError when the server exits or does not answer /health in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"gunicorn exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"gunicorn on port {port} not healthy after {timeout} s")


@contextmanager
def gunicorn(
    settings: Settings,
    workers: int,
    threads: int = THREADS,
    port: int | None = None,
    worker_class: str = WORKER_CLASS,
):
    """A running gunicorn on 127.0.0.1; yields (port, process). Stopped with SIGTERM afterwards."""
    port = port or free_port()
    command = gunicorn_command(port, workers, threads, worker_class)
    process = subprocess.Popen(command, cwd=ROOT, env=server_env(settings))
    try:
        wait_healthy(port, process)
        yield port, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- load generator -----------------------------------------------------------------------


class Client:
    """One keep-alive connection (http.client reconnects by itself when the server closes it)."""

    def __init__(self, port: int, token: str | None = None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, float]:
        """(status, JSON body, milliseconds)."""
        payload = json.dumps(body).encode() if body is not None else None
        began = time.perf_counter()
        try:
            self.conn.request(method, path, body=payload, headers=self.headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()  # a keep-alive connection the server had closed: once more
            self.conn.request(method, path, body=payload, headers=self.headers)
            response = self.conn.getresponse()
        raw = response.read()
        elapsed = (time.perf_counter() - began) * 1000
        return response.status, (json.loads(raw) if raw else {}), elapsed

    def close(self) -> None:
        self.conn.close()


def login(port: int, username: str) -> str:
    status, body, _ = Client(port).call(
        "POST", "/api/v1/auth/token", {"username": username, "password": DEMO_PASSWORD}
    )
    if status != 200:
        raise BenchError(f"login {username}: {status} {body}")
    return body["token"]


class Tally:
    """What all users of one run saw, guarded by a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency = defaultdict(list, start_instance=[], complete_task=[])
        self.statuses = Counter()
        self.started: list[int] = []
        self.completed: list[int] = []  # task ids that answered 200 to a complete
        self.race_slot: tuple[int, int] | None = None  # (thread id, task id)
        self.errors: list[str] = []

    def record(self, operation: str, status: int, ms: float, body: dict) -> None:
        with self.lock:
            self.statuses[f"{operation}:{status}"] += 1
            if status in (200, 201):
                self.latency[operation].append(ms)
            elif status != 409 and len(self.errors) < 20:
                self.errors.append(f"{operation} {status} {str(body)[:200]}")


def complete(client: Client, tally: Tally, task_id: int, body: dict) -> dict | None:
    status, answer, ms = client.call("POST", f"/api/v1/tasks/{task_id}/complete", body)
    tally.record("complete_task", status, ms, answer)
    if status != 200:
        return None
    with tally.lock:
        tally.completed.append(task_id)
    return answer


def one_matter(client: Client, tally: Tally, race: bool) -> None:
    """Start an instance, complete its first review, then its confirmation (if still ours)."""
    status, instance, ms = client.call("POST", "/api/v1/process-instances", START_BODY)
    tally.record("start_instance", status, ms, instance)
    if status != 201:
        return
    first_task = instance["tasks"][0]["id"]
    with tally.lock:
        tally.started.append(instance["id"])
        me = threading.get_ident()
        slot = tally.race_slot
        rival = slot[1] if race and slot and slot[0] != me else None
        tally.race_slot = (me, first_task)
    if rival is not None:  # race the user who was just given this task
        answer = complete(client, tally, rival, REVIEW_BODY)
        _confirm_next(client, tally, answer)
    _confirm_next(client, tally, complete(client, tally, first_task, REVIEW_BODY))


def _confirm_next(client: Client, tally: Tally, answer: dict | None) -> None:
    for task in (answer or {}).get("next_tasks", []):
        complete(client, tally, task["id"], CONFIRM_BODY)


def user_loop(port: int, token: str, tally: Tally, deadline: float, iterations: int) -> None:
    client = Client(port, token)
    try:
        for n in range(iterations):
            if time.monotonic() >= deadline:
                break
            one_matter(client, tally, race=(n % RACE_EVERY == RACE_EVERY - 1))
    except Exception as exc:  # noqa: BLE001 - a dead user thread is reported, not hidden
        with tally.lock:
            tally.errors.append(f"user thread: {exc!r}")
    finally:
        client.close()


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1], 2)


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 0.50),
        "p95_ms": percentile(values, 0.95),
        "max_ms": round(max(values), 2) if values else None,
    }


def run_level(
    port: int | list[int], tokens: list[str], seconds: float, iterations: int
) -> tuple[dict, Tally]:
    """N = len(tokens) users for `seconds` or `iterations` matters each; figures and the tally.

    With a list of ports (several servers), user i talks to ports[i % len(ports)].
    """
    ports = [port] if isinstance(port, int) else port
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=user_loop, args=(ports[i % len(ports)], token, tally, deadline, iterations))
        for i, token in enumerate(tokens)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    figures = {
        "users": len(tokens),
        "wall_s": round(wall, 2),
        "start_instance": summary(tally.latency["start_instance"]),
        "complete_task": summary(tally.latency["complete_task"]),
        "completed_tasks_per_s": round(len(tally.completed) / wall, 1),
        "requests_per_s": round(sum(tally.statuses.values()) / wall, 1),
        "conflicts_409": sum(n for k, n in tally.statuses.items() if k.endswith(":409")),
        "statuses": dict(tally.statuses),
        "errors": tally.errors,
    }
    return figures, tally


# --- consistency --------------------------------------------------------------------------


def check_consistency(url: str, tallies: list[Tally]) -> dict:
    """The no-lost-update check over every run against this database; `ok` False names the problems."""
    completed = [task for tally in tallies for task in tally.completed]
    started = {instance for tally in tallies for instance in tally.started}
    problems = []
    twice = [task for task, n in Counter(completed).items() if n > 1]
    if twice:
        problems.append(f"tasks completed twice: {twice[:10]}")
    db = make_engine(url)
    with make_session_factory(db)() as session:
        done_in_db = set(session.scalars(select(HumanTask.id).where(HumanTask.status == "completed")).all())
        instances = dict(session.execute(select(ProcessInstance.id, ProcessInstance.status)).all())
        events = session.scalar(
            select(func.count(func.distinct(Event.task_id))).where(Event.type == "completed")
        )
        event_rows = session.scalar(select(func.count()).select_from(Event).where(Event.type == "completed"))
        per_instance = Counter(
            session.scalars(select(HumanTask.instance_id).where(HumanTask.id.in_(completed or [-1]))).all()
        )
    db.dispose()
    if done_in_db != set(completed):
        problems.append(
            f"completed in database but not answered 200: {sorted(done_in_db - set(completed))[:10]}; "
            f"answered 200 but not completed: {sorted(set(completed) - done_in_db)[:10]}"
        )
    missing = started - set(instances)
    if missing:
        problems.append(f"started instances missing: {sorted(missing)[:10]}")
    unfinished = [i for i, n in per_instance.items() if n == 2 and instances.get(i) != "completed"]
    if unfinished:
        problems.append(f"both tasks done but instance not completed: {unfinished[:10]}")
    if events != len(completed) or event_rows != len(completed):
        problems.append(
            f"{event_rows} 'completed' events on {events} tasks for {len(completed)} completed tasks"
        )
    return {
        "ok": not problems,
        "instances_started": len(started),
        "tasks_completed": len(completed),
        "instances_completed": sum(1 for i in started if instances.get(i) == "completed"),
        "completed_events": event_rows,
        "problems": problems,
    }


# --- report -------------------------------------------------------------------------------


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_cpu_s(master: int) -> float:
    """CPU seconds of a gunicorn master's current workers."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sum(process_cpu_s(int(pid)) for pid in children)


def backends_cpu_s(url: str | None) -> dict[int, float]:
    """CPU seconds per PostgreSQL backend connected to this database (same host); {} for SQLite."""
    if not url or not url.startswith("postgresql"):
        return {}
    db = make_engine(url)
    with db.connect() as conn:
        pids = conn.scalars(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
    db.dispose()
    found = {}
    for pid in pids:
        try:
            found[pid] = process_cpu_s(pid)
        except OSError:  # gone, or PostgreSQL on another host
            pass
    return found


def measured_level(
    port, tokens, seconds, iterations, master: int, url: str | None = None
) -> tuple[dict, Tally]:
    """run_level plus the CPU that the server's workers, PostgreSQL's backends and this load
    generator used per completed task.

    The box is shared: CPU per task does not depend on what else runs, latency does.
    """
    server_before, client_before = workers_cpu_s(master), time.process_time()
    backends_before = backends_cpu_s(url)
    figures, tally = run_level(port, tokens, seconds, iterations)
    server_cpu = workers_cpu_s(master) - server_before
    client_cpu = time.process_time() - client_before
    backends_after = backends_cpu_s(url)
    database_cpu = sum(cpu - backends_before.get(pid, 0.0) for pid, cpu in backends_after.items())
    done = max(1, len(tally.completed))
    figures["server_cpu_ms_per_completed_task"] = round(server_cpu * 1000 / done, 1)
    figures["postgresql_cpu_ms_per_completed_task"] = round(database_cpu * 1000 / done, 1)
    figures["loadgen_cpu_ms_per_completed_task"] = round(client_cpu * 1000 / done, 1)
    figures["server_cpu_share"] = round(server_cpu / figures["wall_s"], 2)
    return figures, tally


def run_database(args, db: str, folder: Path) -> dict:
    url = database_url(db, folder)
    users = max(args.users)
    say(f"[http_load] preparing {url.split('@')[-1]}")
    settings = prepare(url, folder, users)
    result = {"database": "sqlite" if db == "sqlite" else "postgresql", "levels": []}
    tallies = []
    with gunicorn(settings, args.workers, args.threads, worker_class=args.worker_class) as (port, process):
        tokens = [login(port, name) for name in load_usernames(users)]
        warm, warm_tally = run_level(port, tokens[:4], 60, 3)  # warm the workers' caches
        tallies.append(warm_tally)
        for level in args.users:
            say(f"[http_load] {result['database']}: {level} users, {args.seconds} s")
            loadavg = [round(x, 2) for x in os.getloadavg()]
            figures, tally = measured_level(
                port, tokens[:level], args.seconds, args.iterations, process.pid, url
            )
            tallies.append(tally)
            result["levels"].append({**figures, "loadavg_before": loadavg})
        if args.keep_server:
            say(f"[http_load] gunicorn master {process.pid} on port {port} for {args.keep_server} s")
            time.sleep(args.keep_server)
    result["consistency"] = check_consistency(url, tallies)
    return result


def targets(results: list[dict]) -> dict:
    met = {}
    for result in results:
        for level in result["levels"]:
            if result["database"] == "postgresql" and level["users"] == 4:
                p95 = level["complete_task"]["p95_ms"]
                met["complete_p95_ms_at_4_users_postgresql"] = {
                    "target": TARGETS["complete_p95_ms_at_4_users_postgresql"],
                    "measured": p95,
                    "met": p95 is not None and p95 <= TARGETS["complete_p95_ms_at_4_users_postgresql"],
                }
            if level["users"] == 16:
                rate = level["completed_tasks_per_s"]
                met[f"completed_tasks_per_s_at_16_users_{result['database']}"] = {
                    "target": TARGETS["completed_tasks_per_s_at_16_users"],
                    "measured": rate,
                    "met": rate >= TARGETS["completed_tasks_per_s_at_16_users"],
                }
    return met


def markdown(report: dict) -> str:
    lines = [
        "| db | users | start p50 | start p95 | complete p50 | complete p95 | tasks/s | 409s "
        "| gunicorn CPU ms/task | PostgreSQL CPU ms/task | gunicorn CPU share | load avg | consistent |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for result in report["results"]:
        for level in result["levels"]:
            start, done = level["start_instance"], level["complete_task"]
            lines.append(
                f"| {result['database']} | {level['users']} | {start['p50_ms']} | {start['p95_ms']} "
                f"| {done['p50_ms']} | {done['p95_ms']} | {level['completed_tasks_per_s']} "
                f"| {level['conflicts_409']} | {level['server_cpu_ms_per_completed_task']} "
                f"| {level['postgresql_cpu_ms_per_completed_task']} "
                f"| {level['server_cpu_share']} | {level['loadavg_before'][0]} "
                f"| {result['consistency']['ok']} |"
            )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db",
        action="append",
        help="'sqlite' or a PostgreSQL URL whose schema is DROPPED (repeatable; default: sqlite)",
    )
    parser.add_argument("--users", default="1,4,16", help="concurrency levels, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per level")
    parser.add_argument("--iterations", type=int, default=100_000, help="matters per user per level")
    parser.add_argument("--workers", type=int, default=default_workers(), help="default: one per core")
    parser.add_argument("--threads", type=int, default=THREADS, help="per gthread worker")
    parser.add_argument("--worker-class", choices=("gthread", "sync"), default=WORKER_CLASS)
    parser.add_argument("--keep-server", type=float, default=0, help="seconds to keep gunicorn up")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    args.users = [int(n) for n in args.users.split(",")]
    args.db = args.db or ["sqlite"]
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    report = {
        "machine": machine(),
        "server": {
            "worker_class": args.worker_class,
            "workers": args.workers,
            "threads": args.threads if args.worker_class == "gthread" else 1,
        },
        "seconds_per_level": args.seconds,
        "results": [],
    }
    for db in args.db:
        with tempfile.TemporaryDirectory(prefix="chengxin-http-") as folder:
            report["results"].append(run_database(args, db, Path(folder)))
    report["targets"] = targets(report["results"])
    report["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, ensure_ascii=False, indent=2))
    print()
    print(markdown(report))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    return report


if __name__ == "__main__":
    main()
