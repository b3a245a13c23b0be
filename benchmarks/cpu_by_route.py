"""A gunicorn config file for the benchmarks: each request's CPU time, added up by route.

    gunicorn config.wsgi -c benchmarks/cpu_by_route.py ...   (CPU_BY_ROUTE_DIR=<a directory>)

The handling thread's own CPU (`time.thread_time`, so neither other threads' work nor time spent
waiting for the GIL, the database or Stripe) is read before and after each request and added to
its route's total (`route_of`: the path with its tokens and ids written as `<id>`). Each
worker writes its totals as JSON to CPU_BY_ROUTE_DIR at most every second and when it exits;
`cpu_by_route_read` adds the workers' files up. With CPU_BY_ROUTE_PROFILE=N every N-th request
of a route is also profiled (cProfile timed by the thread's own CPU), and each worker writes its routes'
profiles beside its totals when it exits (`<route>-<pid>.pstats`, for `python -m pstats`).
"""

from __future__ import annotations

import cProfile
import json
import pstats
import os
import re
import threading
import time
from collections import defaultdict
from pathlib import Path

_TOKEN = re.compile(r"/(cs_[A-Za-z0-9_]+|[A-Za-z0-9_:-]{20,}|\d+)(?=/|$)")

_started = threading.local()
_totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
_lock = threading.Lock()
_written_at = [0.0]


def route_of(method: str, path: str) -> str:
    return f"{method} {_TOKEN.sub('/<id>', path)}"


_profiles: dict[str, pstats.Stats] = {}
_PROFILE_EVERY = int(os.environ.get("CPU_BY_ROUTE_PROFILE") or 0)


def pre_request(worker, req) -> None:
    _started.profile = None
    # A read that adds no route: only post_request adds them, under the lock _write reads under.
    if _PROFILE_EVERY and _totals.get(route_of(req.method, req.path), (0,))[0] % _PROFILE_EVERY == 0:
        _started.profile = cProfile.Profile(time.thread_time)
        _started.profile.enable()
    _started.cpu = time.thread_time()


def post_request(worker, req, environ, resp) -> None:
    started = getattr(_started, "cpu", None)
    if started is None:
        return
    spent = time.thread_time() - started
    route = route_of(req.method, req.path)
    profile = getattr(_started, "profile", None)
    if profile is not None:
        profile.disable()
        _started.profile = None
        with _lock:
            if route in _profiles:
                _profiles[route].add(profile)
            else:
                _profiles[route] = pstats.Stats(profile)
    with _lock:
        total = _totals[route]
        total[0] += 1
        total[1] += spent
        due = time.monotonic() - _written_at[0] >= 1
    if due:
        _write()


def worker_exit(server, worker) -> None:
    _write(profiles=True)


def _write(*, profiles: bool = False) -> None:
    directory = os.environ.get("CPU_BY_ROUTE_DIR")
    if not directory:
        return
    with _lock:
        _written_at[0] = time.monotonic()
        totals = json.dumps(_totals)
        kept = dict(_profiles) if profiles else {}
    path = Path(directory, f"worker-{os.getpid()}.json")
    path.with_suffix(".tmp").write_text(totals)
    path.with_suffix(".tmp").replace(path)
    for route, stats in kept.items():
        stats.dump_stats(Path(directory, f"{re.sub(r'[^A-Za-z0-9]+', '_', route).strip('_')}-{os.getpid()}.pstats"))


def cpu_by_route_read(directory: Path) -> dict[str, tuple[int, float]]:
    """Every worker's totals added up: route -> (requests, CPU seconds)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for file in Path(directory).glob("worker-*.json"):
        for route, (count, seconds) in json.loads(file.read_text()).items():
            totals[route][0] += count
            totals[route][1] += seconds
    return {route: (int(count), seconds) for route, (count, seconds) in totals.items()}
