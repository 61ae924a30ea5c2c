"""`python -m bench.scaleout`: 2 gunicorn servers + 2 `chengxin worker` processes on one PostgreSQL.

    python -m bench.scaleout --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_http
    python -m bench.scaleout --db ... --users 16 --seconds 30 --timers 300 --web-workers 2

The schema of --db is DROPPED. Two gunicorn masters (--web-workers sync workers each, own ports)
and two job workers (polling every 0.2 s) share the database. bench.http_load's matters run
with the users split across both servers, while --timers instances of a flow whose timer is due
one second after the start are started in batches during the load. Then, once the timers are
done (or --settle seconds passed), the checks: bench.http_load's no-lost-update check, and per
timer instance exactly one `timers_fired` event, exactly one task projected after the timer,
no timer row left. The workers' logs tell which process fired how many.
Progress goes to stderr; stdout holds the JSON, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import func, select

from bench import http_load
from engine import runtime
from engine.config import Settings
from engine.db import make_engine, make_session_factory, transaction
from engine.models import Event, HumanTask, ProcessInstance, Timer, User
from engine.users import actor_for

TIMER_KEY = "bench_timer"
TIMER_FLOW = (
    "bench_timer.bpmn",
    b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
                  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                  id="defs_bench_timer" targetNamespace="http://chengxin.local/bench">
  <bpmn:process id="bench_timer" name="\xe5\xae\x9a\xe6\x97\xb6\xe5\x8e\x8b\xe6\xb5\x8b" isExecutable="true">
    <bpmn:startEvent id="start" name="\xe5\xbc\x80\xe5\xa7\x8b" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait" />
    <bpmn:intermediateCatchEvent id="wait" name="\xe7\xad\x89\xe5\xbe\x85\xe4\xb8\x80\xe7\xa7\x92">
      <bpmn:timerEventDefinition><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">PT1S</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="handle" />
    <bpmn:userTask id="handle" name="\xe5\xa4\x84\xe7\x90\x86" camunda:candidateGroups="office" camunda:formRef="simple_confirm" />
    <bpmn:sequenceFlow id="f3" sourceRef="handle" targetRef="end" />
    <bpmn:endEvent id="end" name="\xe7\xbb\x93\xe6\x9d\x9f" />
  </bpmn:process>
</bpmn:definitions>
""",
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_timer_instances(sessions, settings: Settings, count: int) -> list[int]:
    """Start `count` bench_timer instances (timer due in one second) as the registrar; their ids."""
    with transaction(sessions) as session:
        user = session.scalar(select(User).where(User.username == "registrar"))
        ctx = runtime.Context(session, actor_for(user), settings)
        return [runtime.start_instance(ctx, TIMER_KEY).id for _ in range(count)]


def job_worker(settings: Settings, log: Path) -> subprocess.Popen:
    env = {**http_load.server_env(settings), "CHENGXIN_WORKER_POLL": "0.2"}
    chengxin = Path(sys.executable).parent / "chengxin"
    return subprocess.Popen(
        [str(chengxin), "worker"], cwd=http_load.ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def timers_done(sessions, instance_ids: list[int]) -> bool:
    with sessions() as session:
        return not session.scalar(
            select(func.count()).select_from(Timer).where(Timer.instance_id.in_(instance_ids))
        )


def check_timers(sessions, instance_ids: list[int]) -> dict:
    """Each timer instance: one timers_fired event, one task after the timer, no timer left."""
    with sessions() as session:
        fired = Counter(
            session.scalars(
                select(Event.instance_id).where(
                    Event.type == "timers_fired", Event.instance_id.in_(instance_ids)
                )
            ).all()
        )
        tasks = Counter(
            session.scalars(
                select(HumanTask.instance_id).where(HumanTask.instance_id.in_(instance_ids))
            ).all()
        )
        left = session.scalar(
            select(func.count()).select_from(Timer).where(Timer.instance_id.in_(instance_ids))
        )
        statuses = Counter(
            session.scalars(select(ProcessInstance.status).where(ProcessInstance.id.in_(instance_ids))).all()
        )
    problems = []
    not_once = {i: fired[i] for i in instance_ids if fired[i] != 1}
    if not_once:
        problems.append(f"timers_fired events not exactly one: {dict(list(not_once.items())[:10])}")
    wrong_tasks = {i: tasks[i] for i in instance_ids if tasks[i] != 1}
    if wrong_tasks:
        problems.append(f"task count after the timer not one: {dict(list(wrong_tasks.items())[:10])}")
    if left:
        problems.append(f"{left} timers still waiting")
    return {
        "ok": not problems,
        "instances": len(instance_ids),
        "fired_once": sum(1 for i in instance_ids if fired[i] == 1),
        "statuses": dict(statuses),
        "problems": problems,
    }


def fired_by(logs: list[Path]) -> dict:
    """Per worker log: instances whose timers it fired, rounds it left for later (the sharing)."""
    shares = {}
    for log in logs:
        lines = log.read_text().splitlines()
        shares[log.name] = {
            "fired": sum(1 for line in lines if "due timers fired" in line),
            "retried_later": sum(1 for line in lines if "retried later" in line),
        }
    return shares


def run(args, folder: Path) -> dict:
    settings = http_load.prepare(args.db, folder, args.users, [TIMER_FLOW])
    sessions = make_session_factory(make_engine(args.db))
    logs = [folder / "worker-1.log", folder / "worker-2.log"]
    timer_ids: list[int] = []
    with ExitStack() as stack:
        servers = [stack.enter_context(http_load.gunicorn(settings, args.web_workers)) for _ in range(2)]
        ports = [port for port, _ in servers]
        for log in logs:
            stack.callback(stop, job_worker(settings, log))
        tokens = [http_load.login(ports[0], name) for name in http_load.load_usernames(args.users)]
        say(f"[scaleout] servers on {ports}, {args.users} users for {args.seconds} s")

        def start_timers() -> None:  # in batches across the load
            batches = 10
            for _ in range(batches):
                timer_ids.extend(start_timer_instances(sessions, settings, args.timers // batches))
                time.sleep(args.seconds / (batches + 1))

        starter = threading.Thread(target=start_timers)
        starter.start()
        figures, tally = http_load.run_level(ports, tokens, args.seconds, args.iterations)
        starter.join()
        deadline = time.monotonic() + args.settle
        while not timers_done(sessions, timer_ids) and time.monotonic() < deadline:
            time.sleep(0.5)
        say("[scaleout] load done, timers settled; stopping")
    return {
        "servers": 2,
        "web_workers_each": args.web_workers,
        "job_workers": 2,
        "load": figures,
        "consistency": http_load.check_consistency(args.db, [tally]),
        "timers": check_timers(sessions, timer_ids),
        "fired_by_worker": fired_by(logs),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="PostgreSQL URL; its schema is DROPPED")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--timers", type=int, default=300)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--settle", type=float, default=120.0, help="max seconds to wait for timers")
    parser.add_argument("--json-out", type=Path)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chengxin-scale-") as folder:
        report = {"machine": http_load.machine(), **run(args, Path(folder))}
    report["machine"]["loadavg_after"] = [round(x, 2) for x in __import__("os").getloadavg()]
    out = json.dumps(report, ensure_ascii=False, indent=2)
    print(out)
    print()
    load = report["load"]
    print("| users | complete p50 | complete p95 | tasks/s | 409s | no lost update | timers once |")
    print("|---:|---:|---:|---:|---:|---|---|")
    print(
        f"| {load['users']} | {load['complete_task']['p50_ms']} | {load['complete_task']['p95_ms']} "
        f"| {load['completed_tasks_per_s']} | {load['conflicts_409']} | {report['consistency']['ok']} "
        f"| {report['timers']['ok']} ({report['timers']['fired_once']}/{report['timers']['instances']}) |"
    )
    if args.json_out:
        args.json_out.write_text(out)
    return report


if __name__ == "__main__":
    main()
