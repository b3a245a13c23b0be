"""``python -m stripe_emulator``: run the emulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading

from .backend import Tuning
from .emulator import Emulator
from .pace import PRESETS, PaceError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_emulator",
        description="A local Stripe emulator: API, hosted Checkout and portal pages, signed webhooks.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=12111, help="Port to listen on (default 12111; 0 picks a free one).")
    parser.add_argument("--db", default=".emulator.sqlite3",
                        help="SQLite file holding the state (default .emulator.sqlite3; ':memory:' keeps nothing).")
    parser.add_argument("--forward-to", default=None, help="URL that receives the webhooks (default: none).")
    parser.add_argument("--forward-events", default=None, metavar="TYPE,...",
                        help="send only these event types to the endpoints, comma-separated, as a Dashboard "
                             "endpoint's enabled events or `stripe listen --events` (default: every type)")
    parser.add_argument("--webhook-secret", default=None,
                        help="whsec_… secret to sign webhooks with (default: the one stored in --db, or a new one).")
    parser.add_argument("--forward-connect-to", default=None,
                        help="URL that receives connected accounts' events (the Connect endpoint; default: none).")
    parser.add_argument("--connect-webhook-secret", default=None,
                        help="whsec_… secret of the Connect endpoint (default: the one stored in --db, or a new one).")
    parser.add_argument("--public-url", default=None,
                        help="Base of the hosted page URLs (default http://HOST:PORT), e.g. when behind a proxy.")
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    pace = parser.add_argument_group("Stripe's pace (all off by default)")
    pace.add_argument("--pace", choices=list(PRESETS), default=None,
                      help="stripe-test: writes 250:900 ms, reads 120:450 ms, 25 requests/s per key and 25/s per endpoint; "
                           "stripe-live: the same with 100 requests/s per key. The options below override it.")
    pace.add_argument("--write-latency", metavar="MEDIAN:P99", default=None,
                      help="latency of POST/DELETE calls in ms, log-normal with this median and 99th percentile, or off")
    pace.add_argument("--read-latency", metavar="MEDIAN:P99", default=None,
                      help="latency of GET calls in ms, likewise, or off")
    pace.add_argument("--rate-limit", metavar="N", default=None,
                      help="requests per second per secret key (test = 25, live = 100, off); beyond it 429 rate_limit")
    pace.add_argument("--endpoint-rate-limit", metavar="N", default=None,
                      help="requests per second per key to one endpoint (Stripe: 25), or off")
    pace.add_argument("--pace-seed", type=int, default=None, help="seed of the latency draws (reproducible runs)")
    tuning = parser.add_argument_group("tuning")
    for field in dataclasses.fields(Tuning):
        flag = "--" + field.name.replace("_", "-")
        metavar = {"int": "N", "float": "SECONDS", "str": "TEXT"}[type(field.default).__name__]
        tuning.add_argument(flag, type=type(field.default), default=field.default, dest=f"tuning_{field.name}",
                            metavar=metavar, help=f"{Tuning.describe(field.name)} (default {field.default})")
    return parser


def _latency_text(latency: dict | None) -> str:
    return f"{latency['median_ms']:g} ms median / {latency['p99_ms']:g} ms p99" if latency else "instant"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tuning = {name[len("tuning_"):]: value for name, value in vars(args).items() if name.startswith("tuning_")}
    pace: dict[str, object] = {}
    if args.pace:
        pace["preset"] = args.pace
    for name in ("write_latency", "read_latency", "rate_limit", "endpoint_rate_limit"):
        if getattr(args, name) is not None:
            pace[name] = getattr(args, name)
    if args.pace_seed is not None:
        pace["seed"] = args.pace_seed
    try:
        emulator = Emulator(
            db=args.db,
            port=args.port,
            forward_to=args.forward_to,
            webhook_secret=args.webhook_secret,
            host=args.host,
            public_url=args.public_url,
            connect_forward_to=args.forward_connect_to,
            connect_webhook_secret=args.connect_webhook_secret,
            pace=pace,
            forward_events=[name.strip() for name in args.forward_events.split(",") if name.strip()]
            if args.forward_events else None,
            **tuning,
        )
    except PaceError as error:
        print(f"Bad pace option: {error}", file=sys.stderr)
        return 2
    try:
        emulator.start()
    except OSError as error:
        print(f"Cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"Stripe emulator on {emulator.url} (state in {args.db}); overview at {emulator.public_url}/_emulator/", flush=True)
    if args.forward_to:
        only = f" ({args.forward_events} only)" if args.forward_events else ""
        print(f"Forwarding events to {args.forward_to}{only}", flush=True)
    if args.forward_connect_to:
        print(f"Forwarding connected accounts' events to {args.forward_connect_to}", flush=True)
        if not args.connect_webhook_secret:
            print(f"Your Connect webhook signing secret is {emulator.connect_webhook_secret}", flush=True)
    if emulator.pace.active:
        described = emulator.pace.describe()
        print("Stripe's pace: writes {w}, reads {r}, {rate} requests/s per key, {ep}/s per endpoint".format(
            w=_latency_text(described["write_latency"]), r=_latency_text(described["read_latency"]),
            rate=described["rate_limit"] or "no limit on", ep=described["endpoint_rate_limit"] or "no limit"), flush=True)
    if not args.webhook_secret:
        # As `stripe listen` does: the receiver needs this secret to verify signatures.
        print(f"Ready! Your webhook signing secret is {emulator.webhook_secret} (^C to quit)", flush=True)
    else:
        print("Ready! (^C to quit)", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    print("Stopping.", flush=True)
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
