"""How many Stripe calls a web tier keeps in flight: sync workers, threaded (gthread) workers and
an ASGI deployment (uvicorn workers) with the SDK's async client, each answering one view that
makes one Stripe write, against the Stripe emulator at Stripe's latency. Not a test: it prints a
table (about a minute per variant on a quiet machine).

    python -m benchmarks.stripe_wait
    python -m benchmarks.stripe_wait --connections 48 --seconds 8 --variants sync:3 gthread:3x8 asgi:3

The view (mounted only with BENCHMARK_BARE_VIEW) creates one Stripe Customer and answers "ok":
`/_benchmark/stripe-call/` through the SDK's blocking client, as every Stripe call of the site
is made; `/_benchmark/stripe-call-async/` awaits the SDK's `_async` method over httpx. Stripe's
latency is the emulator's `--pace stripe-test` (writes 250 ms median, 900 ms p99); its rate limit
is off by default (`--rate-limit`), so the figures are the web tier's own ceiling, not Stripe's.
Variants: `sync:N` (N sync workers, the Procfile's default 3), `gthread:NxT` (N workers of T
threads), `asgi:N` (N uvicorn workers, the async view), `asgi-sync:N` (uvicorn workers, the
blocking view, which Django runs in a thread per request).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.load import PROXY_HEADER, free_port, start_gunicorn, write_requests, wrk  # noqa: E402
from benchmarks.onsale import emulator_command, start_emulator, workers_peak_memory_mb  # noqa: E402


def variant_server(variant: str) -> tuple[int, str, tuple[str, ...], str]:
    """(workers, app, gunicorn's extra arguments, path) of `sync:3`, `gthread:3x8`, `asgi:3`, `asgi-sync:3`."""
    kind, _, size = variant.partition(":")
    if kind == "sync":
        return int(size), "config.wsgi", (), "/_benchmark/stripe-call/"
    if kind == "gthread":
        workers, threads = size.split("x")
        return int(workers), "config.wsgi", ("--worker-class", "gthread", "--threads", threads), "/_benchmark/stripe-call/"
    if kind in ("asgi", "asgi-sync"):
        path = "/_benchmark/stripe-call-async/" if kind == "asgi" else "/_benchmark/stripe-call/"
        return int(size), "config.asgi", ("--worker-class", "uvicorn_worker.UvicornWorker"), path
    raise SystemExit(f"unknown variant {variant!r}: sync:N, gthread:NxT, asgi:N or asgi-sync:N")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stripe_wait", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["sync:3", "gthread:3x8", "gthread:3x16", "asgi-sync:3", "asgi:3"])
    parser.add_argument("--connections", type=int, default=48, help="wrk connections (default 48)")
    parser.add_argument("--seconds", type=int, default=8, help="each measured run (default 8, after 2 of warm-up)")
    parser.add_argument("--pace", default="stripe-test", choices=["stripe-test", "stripe-live", "off"])
    parser.add_argument("--rate-limit", default="off", help="the emulator's requests/s per key (default off)")
    args = parser.parse_args(argv)
    for variant in args.variants:
        variant_server(variant)

    work = Path(tempfile.mkdtemp(prefix="slotbook-stripe-wait-"))
    emulator_port = free_port()
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    emulator = start_emulator(
        emulator_command(port=emulator_port, forward_to="http://127.0.0.1:9/", db_path=work / "emulator.sqlite3",
                         pace={"pace": args.pace, "rate_limit": args.rate_limit, "endpoint_rate_limit": args.rate_limit}),
        port=emulator_port, log_path=work / "emulator.log",
    )
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    print(f"Stripe emulator at {emulator_url}, pace {args.pace}, rate limit {args.rate_limit}; wrk -t1 "
          f"-c{args.connections} -d{args.seconds:g}s per variant; load average {os.getloadavg()[0]:.1f}; logs in {work}")
    print(f"\n{'variant':14} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'peak MB':>8}  load")
    try:
        for variant in args.variants:
            workers, app, extra, path = variant_server(variant)
            port = free_port()
            server = start_gunicorn(port=port, workers=workers, emulator_url=emulator_url, database_name=database,
                                    pool=False, redis={"REDIS_URL": ""}, log_path=work / f"{variant.replace(':', '-')}.log",
                                    app=app, extra_args=extra)
            try:
                requests = write_requests(work / "call.tsv", [("GET", path, "", [PROXY_HEADER])])
                base = f"http://127.0.0.1:{port}"
                wrk(base, requests, connections=args.connections, seconds=2)
                run = wrk(base, requests, connections=args.connections, seconds=args.seconds)
                peak, _ = workers_peak_memory_mb(server.pid)
                print(f"{variant:14} {run.rate:7.1f} {run.p50_ms:8.0f} {run.p95_ms:8.0f} {run.p99_ms:8.0f} "
                      f"{run.errors:>6} {peak:8.0f}  {os.getloadavg()[0]:.1f}", flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)
                time.sleep(1)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
