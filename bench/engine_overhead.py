"""What one engine operation costs, measured against bare SpiffWorkflow.

The 10-task sequential process (fixtures/seq10.bpmn) is run through the engine API, through
HTTP (Flask test client) and with bare SpiffWorkflow; one engine complete-task is broken
down by phase; large instances (a 1,000-item multi-instance task, a 500-times loop) are
compared with the 10-task process. Figures are milliseconds of wall clock and of this
process's CPU time.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, crypto, definitions, forms, queries, runtime, store
from engine.access import Actor
from engine.config import Settings
from engine.db import Base, make_engine, make_session_factory, transaction
from engine.models import ProcessInstance, User
from engine.runtime import Context
from engine.users import seed_demo

FIXTURES = Path(__file__).parent / "fixtures"
SEQUENCE_KEY = "bench_seq10"
LOOP_KEY = "bench_loop"
MULTI_KEY = "bench_multi"
AGREE = {"decision": "agree", "summary": "已核实，情况属实", "opinion": "同意，按程序办理。"}
RETURN = {**AGREE, "decision": "return", "opinion": "材料不全，退回重办。"}
# A member of `office`, the candidate group of every task in the fixtures.
USERNAME = "registrar"
ACTOR = Actor(USERNAME, frozenset({"office"}), "登记员 王芳")


class BenchError(Exception):
    """The benchmark cannot run as asked (a non-empty database, an HTTP call that failed)."""


# --- timing -------------------------------------------------------------------------------


def summarize(samples: list[float]) -> dict:
    """Count, median, p95 (nearest rank), mean, min and max of timings in ms."""
    if not samples:
        raise BenchError("no samples to summarize")
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(p95, 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "min_ms": round(ordered[0], 3),
        "max_ms": round(ordered[-1], 3),
    }


@dataclass
class Samples:
    """Wall-clock and process-CPU ms of repeated operations.

    CPU time is what this process spent (for SQLite, nearly all of the work; for PostgreSQL,
    the client side only); unlike wall time it hardly moves when other work shares the host.
    """

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @contextmanager
    def measure(self):
        """Add the block's durations (nothing when the block raises)."""
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.cpu.append((time.process_time() - cpu) * 1000)
        self.wall.append((time.perf_counter() - wall) * 1000)

    def summary(self) -> dict:
        """summarize() of the wall times, plus the median and p95 of the CPU times."""
        cpu = summarize(self.cpu)
        return {**summarize(self.wall), "cpu_median_ms": cpu["median_ms"], "cpu_p95_ms": cpu["p95_ms"]}


@dataclass
class Operations:
    """Samples of start-instance and of complete-task, gathered over one or more rounds."""

    start: Samples = field(default_factory=Samples)
    complete: Samples = field(default_factory=Samples)

    def summary(self) -> dict:
        return {"start_instance": self.start.summary(), "complete_task": self.complete.summary()}


def interleaved(rounds: int, *actions: Callable[[], None]) -> None:
    """Run the actions in turn, `rounds` times: what the host does meanwhile hits them all alike."""
    for _ in range(rounds):
        for action in actions:
            action()


# --- the database under test -------------------------------------------------------------


def fixture_files() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(FIXTURES.iterdir()) if p.suffix in (".bpmn", ".form")]


@dataclass
class Bench:
    """A benchmark database: schema, demo organisation and the fixture processes deployed."""

    url: str
    db: Engine
    factory: sessionmaker[Session]
    settings: Settings
    schema: str | None = None  # a PostgreSQL schema of its own (the control database)

    @contextmanager
    def unit(self):
        """One engine transaction (engine.db.transaction) acting as the bench user."""
        with transaction(self.factory) as session:
            yield Context(session, ACTOR, self.settings)

    def close(self) -> None:
        if self.schema:
            with self.db.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
        self.db.dispose()


def _register_tables() -> None:
    import engine.models  # noqa: F401

    try:
        import engine.credit  # noqa: F401
    except ImportError:
        pass


def _drop_everything(db: Engine, schema: str) -> None:
    if db.dialect.name == "postgresql":
        with db.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    else:
        Base.metadata.drop_all(db)


def open_bench(url: str, instance_dir: Path, *, reset: bool = False, schema: str | None = None) -> Bench:
    """Create the tables, seed the demo users and deploy the fixtures.

    `schema` (PostgreSQL only) puts the tables in a schema of their own, dropped on close.
    Raises BenchError when the database already has tables and `reset` is not set.
    """
    _register_tables()
    if schema:
        db = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        reset = True
    else:
        db = make_engine(url)
    if reset:
        _drop_everything(db, schema or "public")
    elif inspect(db).get_table_names():
        db.dispose()
        raise BenchError(f"database {db.url.render_as_string(hide_password=True)} is not empty; use --reset")
    Base.metadata.create_all(db)
    factory = make_session_factory(db)
    settings = Settings(database_url=url, instance_dir=Path(instance_dir), secret_key="bench-only-secret")
    with transaction(factory) as session:
        seed_demo(session)
        definitions.deploy(session, fixture_files(), user="analyst", note="基准测试")
    return Bench(url, db, factory, settings, schema)


def open_control(bench: Bench, instance_dir: Path) -> Bench:
    """A second, empty database beside `bench`: a SQLite file in `instance_dir`, or a
    PostgreSQL schema in the same database. Timed in turn with `bench`, it shows how much
    of a difference comes from the data and not from the host."""
    if bench.db.dialect.name == "postgresql":
        return open_bench(bench.url, instance_dir, schema="bench_control")
    instance_dir.mkdir(parents=True, exist_ok=True)
    return open_bench(f"sqlite:///{instance_dir / 'control.db'}", instance_dir, reset=True)


def database_version(bench: Bench) -> str:
    with bench.db.connect() as conn:
        if bench.db.dialect.name == "postgresql":
            return conn.scalar(text("SHOW server_version"))
        return "SQLite " + conn.scalar(text("SELECT sqlite_version()"))


# --- the engine API ---------------------------------------------------------------------


def _start(bench: Bench, key: str, variables: dict) -> int:
    with bench.unit() as ctx:
        return runtime.start_instance(ctx, key, variables=variables).id


def _open_task_ids(bench: Bench, instance_id: int) -> list[int]:
    with transaction(bench.factory) as session:
        return [t.id for t in queries.open_tasks_of(session, instance_id)]


def _complete(bench: Bench, task_id: int, data: dict = AGREE) -> int | None:
    """Complete one task in its own transaction; the id of the next task open for me, if any."""
    with bench.unit() as ctx:
        done = runtime.complete_task(ctx, task_id, data)
        return done.next_tasks[0].id if done.next_tasks else None


def _sequence_variables(n: int) -> dict:
    return {"title": f"基准测试事项 {n}"}


def engine_round(bench: Bench, instances: int, into: Operations) -> None:
    """Time start_instance and every complete_task of `instances` 10-task instances, each call
    in its own transaction."""
    for n in range(instances):
        with into.start.measure():
            instance_id = _start(bench, SEQUENCE_KEY, _sequence_variables(n))
        task_id = _open_task_ids(bench, instance_id)[0]
        while task_id is not None:
            with into.complete.measure():
                task_id = _complete(bench, task_id)


def engine_timings(bench: Bench, instances: int) -> dict:
    """engine_round() in one go, summarized."""
    operations = Operations()
    engine_round(bench, instances, operations)
    return operations.summary()


def _run_to_end(ctx: Context, n: int) -> None:
    instance = runtime.start_instance(ctx, SEQUENCE_KEY, variables=_sequence_variables(n))
    task_id = queries.open_tasks_of(ctx.session, instance.id)[0].id
    while task_id is not None:
        done = runtime.complete_task(ctx, task_id, AGREE)
        task_id = done.next_tasks[0].id if done.next_tasks else None


def fill_finished(
    bench: Bench, count: int, *, batch: int = 20, progress: Callable[[int, int], None] | None = None
) -> int:
    """Run `count` 10-task instances to the end through the engine API (untimed).

    Several instances share one transaction: the same engine calls write the same rows,
    only fewer commits. Returns the number of finished instances now in the database.
    """
    done = 0
    while done < count:
        size = min(batch, count - done)
        with bench.unit() as ctx:
            for n in range(done, done + size):
                _run_to_end(ctx, n)
        done += size
        if progress:
            progress(done, count)
    with transaction(bench.factory) as session:
        return session.scalar(
            select(func.count()).select_from(ProcessInstance).where(ProcessInstance.status == "completed")
        )


# --- HTTP ---------------------------------------------------------------------------------


class HttpClient:
    """The Flask test client of a fresh app, calling as the bench user with a bearer token."""

    def __init__(self, bench: Bench):
        from webapp import create_app
        from webapp.auth import issue_token
        from webapp.database import session

        self.app = create_app(bench.settings, TESTING=True)
        self.client = self.app.test_client()
        with self.app.app_context():
            user = session().scalar(select(User).where(User.username == USERNAME))
            token, _ = issue_token(user)
        self.headers = {"Authorization": f"Bearer {token}"}

    def _post(self, path: str, body: dict, expected: int) -> dict:
        response = self.client.post(path, json=body, headers=self.headers)
        if response.status_code != expected:
            raise BenchError(
                f"POST {path} answered {response.status_code}: {response.get_data(as_text=True)}"
            )
        return response.get_json()

    def start(self, n: int) -> int:
        """Start a 10-task instance; the id of its first task."""
        body = {"process_key": SEQUENCE_KEY, "variables": _sequence_variables(n)}
        return self._post("/api/v1/process-instances", body, 201)["tasks"][0]["id"]

    def complete(self, task_id: int) -> int | None:
        body = {"data": AGREE, "comment": AGREE["opinion"]}
        next_tasks = self._post(f"/api/v1/tasks/{task_id}/complete", body, 200)["next_tasks"]
        return next_tasks[0]["id"] if next_tasks else None

    def close(self) -> None:
        self.app.extensions["chengxin"]["engine"].dispose()


def http_round(client: HttpClient, instances: int, into: Operations) -> None:
    """Time POST /process-instances and POST /tasks/{id}/complete of `instances` 10-task instances."""
    for n in range(instances):
        with into.start.measure():
            task_id = client.start(n)
        while task_id is not None:
            with into.complete.measure():
                task_id = client.complete(task_id)


# --- bare SpiffWorkflow -------------------------------------------------------------------


def _bare_spec(file_name: str, key: str):
    parser = CamundaParser()
    parser.add_bpmn_file(str(FIXTURES / file_name))
    return parser.get_spec(key), parser.get_subprocess_specs(key)


def _bare_step(state: str, load, dump, data: dict = AGREE) -> str | None:
    """What a naive app does per request: deserialize, update data, run the task, step, serialize."""
    workflow = load(state)
    ready = workflow.get_tasks(state=TaskState.READY, manual=True)
    if not ready:
        return None
    ready[0].data.update(data)
    ready[0].run()
    workflow.do_engine_steps()
    return dump(workflow)


def _state_only(spec, subprocess_specs):
    """The engine's own (de)serialization: engine.store, spec excluded and passed in."""
    return (lambda s: store.load_state(s, spec, subprocess_specs, PythonScriptEngine()), store.dump_state)


class BareReference:
    """The 10-task process with bare SpiffWorkflow, serialized to a JSON string after every step.

    `full_spec`: BpmnWorkflowSerializer(CAMUNDA_CONFIG), spec included, as a naive app would.
    `state_only`: the engine's own serializer (engine.store), spec excluded and passed in.
    """

    def __init__(self):
        self.spec, self.subprocess_specs = _bare_spec("seq10.bpmn", SEQUENCE_KEY)
        full = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(CAMUNDA_CONFIG))
        self.variants = {
            "full_spec": (full.deserialize_json, full.serialize_json),
            "state_only": _state_only(self.spec, self.subprocess_specs),
        }
        self.steps = {name: Samples() for name in self.variants}
        self.sizes: dict[str, list[int]] = {name: [] for name in self.variants}

    def round(self, instances: int) -> None:
        """Time every step of `instances` instances, per variant."""
        for name, (load, dump) in self.variants.items():
            for _ in range(instances):
                workflow = BpmnWorkflow(self.spec, self.subprocess_specs)
                workflow.do_engine_steps()
                state = dump(workflow)
                for _step in range(10):
                    with self.steps[name].measure():
                        state = _bare_step(state, load, dump)
                    self.sizes[name].append(len(state.encode()))

    def summary(self) -> dict:
        return {
            name: {
                "step": self.steps[name].summary(),
                "state_bytes": int(statistics.median(self.sizes[name])),
            }
            for name in self.variants
        }


def bare_timings(instances: int) -> dict:
    """BareReference rounds in one go, summarized."""
    reference = BareReference()
    reference.round(instances)
    return reference.summary()


def _bare_steps(workflow: BpmnWorkflow, load, dump, samples: int, data: dict) -> dict:
    state = dump(workflow)
    steps = Samples()
    for _ in range(samples):
        with steps.measure():
            state = _bare_step(state, load, dump, data)
    return {"step": steps.summary(), "state_bytes": len(state.encode())}


def bare_multi_instance(items: int, samples: int) -> dict:
    """Bare SpiffWorkflow steps (state only) of the multi-instance task over `items` items."""
    spec, subprocess_specs = _bare_spec("multi.bpmn", MULTI_KEY)
    workflow = BpmnWorkflow(spec, subprocess_specs)
    for task in workflow.get_tasks(state=TaskState.READY):
        task.data["items"] = [f"企业{n:04d}" for n in range(items)]
    workflow.do_engine_steps()
    return _bare_steps(workflow, *_state_only(spec, subprocess_specs), samples, AGREE)


def bare_long_history(completed: int, samples: int) -> dict:
    """Bare SpiffWorkflow steps (state only) of the loop after `completed` loop-backs in memory."""
    spec, subprocess_specs = _bare_spec("loop.bpmn", LOOP_KEY)
    # SpiffWorkflow's own class loses the task near 500 loop-backs (depth limit); the engine's
    # subclass only lifts that limit, and the steps below restore into it anyway.
    workflow = store.Workflow(spec, subprocess_specs)
    workflow.do_engine_steps()
    for _ in range(completed):
        task = workflow.get_tasks(state=TaskState.READY, manual=True)[0]
        task.data.update(RETURN)
        task.run()
        workflow.do_engine_steps()
    return _bare_steps(workflow, *_state_only(spec, subprocess_specs), samples, RETURN)


# --- where one complete-task spends its time ---------------------------------------------

# (phase, owner, attribute): the functions timed. Time is exclusive: a phase's own time,
# without the phases it calls (a flush inside audit counts as flush).
PHASES = (
    ("load", runtime, "_lock_task"),  # SELECT task (+ candidates) and instance (+ definition)
    ("setup", runtime, "load_instance"),  # spec cache lookup, script engine with helpers
    ("crypto", crypto.Cipher, "decrypt"),  # states are encrypted at rest
    ("crypto", crypto.Cipher, "encrypt"),
    ("deserialize", store, "load_state"),
    ("validate", forms, "validate_submission"),
    ("step", runtime, "_run"),  # task.run() and do_engine_steps()
    ("projections", runtime, "snapshot"),  # one walk of the task tree for what follows
    ("projections", runtime, "_sync_tasks"),
    ("projections", runtime, "close_tasks"),
    ("projections", runtime, "_sync_timers"),
    ("serialize", store, "dump_state"),
    ("audit", audit, "record_event"),
    ("flush", Session, "flush"),  # SQL writes, wherever the ORM flushes
    ("commit", Session, "commit"),
)
PHASE_ORDER = (
    "load",
    "setup",
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
# An expression evaluated while syncing projections (a due date) is projection work.
NESTED_IN_CALLER = {"step"}


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class PhaseClock:
    """Exclusive wall and CPU seconds per phase, from timing wrappers around engine functions."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []

    def wrap(self, label: str, func):
        @functools.wraps(func)
        def timed(*args, **kwargs):
            if label in NESTED_IN_CALLER and self._stack:
                return func(*args, **kwargs)
            frame = [0.0, 0.0]  # wall and CPU time spent in the phases it called
            self._stack.append(frame)
            wall, cpu = _now()
            try:
                return func(*args, **kwargs)
            finally:
                wall_end, cpu_end = _now()
                self._stack.pop()
                self._add(label, wall_end - wall, cpu_end - cpu, frame)

        return timed

    def _add(self, label: str, wall: float, cpu: float, nested: list) -> None:
        self.seconds[label] += wall - nested[0]
        self.cpu_seconds[label] += cpu - nested[1]
        if self._stack:
            self._stack[-1][0] += wall
            self._stack[-1][1] += cpu


@contextmanager
def instrumented(clock: PhaseClock):
    """Replace the PHASES functions by timed wrappers for the block; always put them back."""
    saved = []
    try:
        for label, owner, name in PHASES:
            original = (owner.__dict__ if isinstance(owner, type) else vars(owner)).get(name)
            if original is None:
                raise BenchError(f"{owner.__name__}.{name} no longer exists: update bench PHASES")
            saved.append((owner, name, original))
            setattr(owner, name, clock.wrap(label, original))
        yield clock
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


@contextmanager
def sql_statements(db: Engine):
    """Count the SQL statements sent and the time spent in the driver: {"count", "seconds"}."""
    tally = {"count": 0, "seconds": 0.0}
    started: list[float] = []

    def before(*_args):
        started.append(time.perf_counter())

    def after(*_args):
        tally["count"] += 1
        tally["seconds"] += time.perf_counter() - started.pop()

    event.listen(db, "before_cursor_execute", before)
    event.listen(db, "after_cursor_execute", after)
    try:
        yield tally
    finally:
        event.remove(db, "before_cursor_execute", before)
        event.remove(db, "after_cursor_execute", after)


def _per_complete(seconds: dict[str, float], total_ms: float, count: int) -> dict:
    phases = {p: round(seconds[p] * 1000 / count, 3) for p in PHASE_ORDER}
    phases["other"] = round(total_ms - sum(phases.values()), 3)
    return phases


def phase_breakdown(bench: Bench, completes: Callable[[], Samples]) -> dict:
    """Mean ms per phase of the engine complete-tasks that `completes` runs (it returns their timings)."""
    clock = PhaseClock()
    with instrumented(clock), sql_statements(bench.db) as sql:
        totals = completes()
    count = len(totals.wall)
    total, total_cpu = statistics.fmean(totals.wall), statistics.fmean(totals.cpu)
    return {
        "completes": count,
        "total_mean_ms": round(total, 3),
        "phases_mean_ms": _per_complete(clock.seconds, total, count),
        "cpu_total_mean_ms": round(total_cpu, 3),
        "phases_cpu_mean_ms": _per_complete(clock.cpu_seconds, total_cpu, count),
        "sql_statements_per_complete": round(sql["count"] / count, 2),
        "sql_driver_mean_ms": round(sql["seconds"] * 1000 / count, 3),
    }


def complete_task_breakdown(bench: Bench, instances: int) -> dict:
    """The phase breakdown of every complete-task of `instances` 10-task instances."""
    first_tasks = [
        _open_task_ids(bench, _start(bench, SEQUENCE_KEY, _sequence_variables(n)))[0]
        for n in range(instances)
    ]

    def completes() -> Samples:
        timings = Samples()
        for task_id in first_tasks:
            while task_id is not None:
                with timings.measure():
                    task_id = _complete(bench, task_id)
        return timings

    return phase_breakdown(bench, completes)


# --- large instances -----------------------------------------------------------------------


def _state_bytes(bench: Bench, instance_id: int) -> int:
    with transaction(bench.factory) as session:
        return len(session.get(ProcessInstance, instance_id).state.encode())


class MultiInstanceCase:
    """One instance whose parallel multi-instance user task has `items` open tasks."""

    def __init__(self, bench: Bench, items: int):
        self.bench = bench
        self.items = items
        started = Samples()
        with started.measure():
            variables = {"title": "多实例基准", "items": [f"企业{n:04d}" for n in range(items)]}
            self.instance_id = _start(bench, MULTI_KEY, variables)
        self.start_ms = started.wall[0]
        self._open = _open_task_ids(bench, self.instance_id)

    def complete_some(self, count: int) -> Samples:
        """Complete `count` of the open item tasks, each in its own transaction; their timings."""
        timings = Samples()
        for _ in range(count):
            task_id = self._open.pop(0)
            with timings.measure():
                _complete(self.bench, task_id)
        return timings

    def figures(self, timings: Samples) -> dict:
        return {
            "items": self.items,
            "start_instance_ms": round(self.start_ms, 3),
            "complete_task": timings.summary(),
            "state_bytes": _state_bytes(self.bench, self.instance_id),
        }


class LongHistoryCase:
    """One instance whose single task looped back `completed` times (one transaction each)."""

    def __init__(self, bench: Bench, completed: int):
        self.bench = bench
        self.instance_id = _start(bench, LOOP_KEY, {"title": "长历史基准"})
        self._task_id = _open_task_ids(bench, self.instance_id)[0]
        self.completed = 0
        build = Samples()
        for _ in range(completed):
            with build.measure():
                self._loop_back()
        self.build_ms = sum(build.wall)

    def _loop_back(self) -> None:
        if self._task_id is None:
            raise BenchError(f"the loop instance ended after {self.completed} loop-backs")
        self._task_id = _complete(self.bench, self._task_id, RETURN)
        self.completed += 1

    def complete_some(self, count: int) -> Samples:
        """Loop back `count` more times, each in its own transaction; their timings."""
        timings = Samples()
        for _ in range(count):
            with timings.measure():
                self._loop_back()
        return timings

    def figures(self, timings: Samples) -> dict:
        return {
            "completed_before": self.completed - len(timings.wall),
            "build_total_ms": round(self.build_ms, 1),
            "complete_task": timings.summary(),
            "state_bytes": _state_bytes(self.bench, self.instance_id),
        }

    def probe_depth_limit(self, up_to: int) -> int | None:
        """Loop back until `up_to` completions; the count after which the instance wrongly ended.

        SpiffWorkflow's TaskIterator stops at depth 1,000 (max_depth), so a loop that adds
        two tree levels per round loses its task near 500 rounds and the workflow reports
        itself completed although the gateway chose to loop back.
        """
        while self.completed < up_to:
            self._loop_back()
            if self._task_id is None:
                return self.completed
        return None
