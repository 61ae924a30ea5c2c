"""`python -m bench.memory`: RSS of a gunicorn worker and of the job worker over 10,000 requests/rounds.

    python -m bench.memory                                  # SQLite in a temporary folder
    python -m bench.memory --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_http --requests 10000

Web: one sync gunicorn worker (so every request hits the measured process), 4 load users running
bench.http_load's matters (start, first review, confirmation) plus an inbox read per matter.
RSS (/proc/PID/status VmRSS) is read after --warmup requests (imports, caches and pools settled:
the "before") and every 1,000 requests after it, up to --requests more.
Job worker: engine.jobs.run_jobs, the body of `chengxin worker`'s loop, called --rounds times in
this process, with an instance whose timer is due started every 20 rounds so rounds do real
work (fire a timer, project a task); RSS of this process before and after.
Growth target: under 10 %. Progress goes to stderr; stdout holds the JSON, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import select

from bench import http_load
from bench.scaleout import TIMER_FLOW, start_timer_instances
from engine.db import make_engine, make_session_factory

TARGET_GROWTH_PCT = 10.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def worker_pid(master: int) -> int:
    """The single gunicorn worker forked by `master`."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {children}")
    return int(children[0])


def growth(before: int, after: int) -> float:
    return round((after - before) * 100 / before, 1)


def drive(port: int, tokens: list[str], requests: int) -> int:
    """Run matters with len(tokens) users until `requests` requests were made; the count made."""
    tally = http_load.Tally()
    stop = threading.Event()

    def user(token: str) -> None:
        client = http_load.Client(port, token)
        n = 0
        try:
            while not stop.is_set():
                http_load.one_matter(client, tally, race=(n % 5 == 4))
                status, body, ms = client.call("GET", "/api/v1/tasks?scope=mine")
                tally.record("inbox", status, ms, body)
                n += 1
                with tally.lock:
                    if sum(tally.statuses.values()) >= requests:
                        stop.set()
        except Exception as exc:  # noqa: BLE001 - reported by drive(), not lost in a thread
            with tally.lock:
                tally.errors.append(repr(exc))
            stop.set()
        finally:
            client.close()

    threads = [threading.Thread(target=user, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = sum(tally.statuses.values())
    if tally.errors or made < requests:
        raise RuntimeError(f"{made} of {requests} requests made; errors: {tally.errors[:3]}")
    return made


def web_memory(url: str, folder: Path, requests: int, warmup: int) -> dict:
    settings = http_load.prepare(url, folder, 4)
    with http_load.gunicorn(settings, workers=1) as (port, process):
        pid = worker_pid(process.pid)
        tokens = [http_load.login(port, name) for name in http_load.load_usernames(4)]
        fresh = rss_kib(pid)
        drive(port, tokens, warmup)
        before = rss_kib(pid)
        samples = []
        for done in range(1000, requests + 1, 1000):
            drive(port, tokens, 1000)
            samples.append({"requests": done, "rss_kib": rss_kib(pid)})
            say(f"[memory] web: {done} requests, RSS {samples[-1]['rss_kib']} KiB")
    after = samples[-1]["rss_kib"]
    return {
        "fresh_rss_kib": fresh,
        "before_rss_kib": before,
        "after_rss_kib": after,
        "requests_after_warmup": requests,
        "growth_pct": growth(before, after),
        "samples": samples,
    }


def job_worker_memory(url: str, folder: Path, rounds: int) -> dict:
    from engine.config import Settings
    from engine.jobs import _Round, run_jobs
    from engine.models import Timer

    settings = Settings.from_env(database_url=url, instance_dir=folder, secret_key=http_load.SECRET_KEY)
    sessions = make_session_factory(make_engine(url))
    state = _Round()
    for _ in range(20):  # warm-up rounds, each with work
        start_timer_instances(sessions, settings, 1)
        run_jobs(sessions, settings, state=state)
    before = rss_kib(os.getpid())
    began = time.perf_counter()
    samples = []
    for n in range(1, rounds + 1):
        if n % 20 == 0:
            start_timer_instances(sessions, settings, 1)
        run_jobs(sessions, settings, state=state)
        if n % 1000 == 0:
            samples.append({"rounds": n, "rss_kib": rss_kib(os.getpid())})
            say(f"[memory] job worker: {n} rounds, RSS {samples[-1]['rss_kib']} KiB")
    with sessions() as session:
        waiting = len(session.scalars(select(Timer.id)).all())
    after = rss_kib(os.getpid())
    return {
        "before_rss_kib": before,
        "after_rss_kib": after,
        "rounds": rounds,
        "seconds": round(time.perf_counter() - began, 1),
        "timers_left_waiting": waiting,
        "growth_pct": growth(before, after),
        "samples": samples,
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite", help="'sqlite' or a PostgreSQL URL (schema DROPPED)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--json-out", type=Path)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    report = {"machine": http_load.machine(), "target_growth_pct": TARGET_GROWTH_PCT}
    with tempfile.TemporaryDirectory(prefix="chengxin-mem-") as folder:
        url = http_load.database_url(args.db, Path(folder))
        report["database"] = "sqlite" if args.db == "sqlite" else "postgresql"
        report["web_worker"] = web_memory(url, Path(folder), args.requests, args.warmup)
        http_load.prepare(url, Path(folder), 1, [TIMER_FLOW])
        report["job_worker"] = job_worker_memory(url, Path(folder), args.rounds)
    for part in ("web_worker", "job_worker"):
        report[part]["met"] = report[part]["growth_pct"] <= TARGET_GROWTH_PCT
    out = json.dumps(report, ensure_ascii=False, indent=2)
    print(out)
    print()
    print("| process | before KiB | after KiB | growth % | ≤ 10 % |\n|---|---:|---:|---:|---|")
    for part in ("web_worker", "job_worker"):
        r = report[part]
        print(f"| {part} | {r['before_rss_kib']} | {r['after_rss_kib']} | {r['growth_pct']} | {r['met']} |")
    if args.json_out:
        args.json_out.write_text(out)
    return report


if __name__ == "__main__":
    main()
