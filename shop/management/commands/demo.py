"""`python manage.py demo`: the whole site on one machine, with no Stripe account needed.

Starts the local Stripe emulator (unless STRIPE_SECRET_KEY is set, in which case that Stripe
is used), migrates, loads the demo data, serves the site, and prints the address to open. With
no Celery broker (CELERY_BROKER_URL unset) it runs `reconcile` and `sendreminders` every minute
itself, as beat would.
E-mails the site sends are written one file each to the outbox folder it prints.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from shop.demo import DEMO_FREE_PROMOTION_CODE

DEMO_WEBHOOK_SECRET = "whsec_slotbook_local_demo_secret"
DEMO_CONNECT_WEBHOOK_SECRET = "whsec_slotbook_local_demo_connect_secret"
# The platform's fee the demo takes with Connect on, unless PLATFORM_FEE_* are set: 5% + 0.30.
DEMO_PLATFORM_FEE = {"PLATFORM_FEE_PERCENT": "5", "PLATFORM_FEE_FIXED": "30"}
DEMO_SECRET_KEY = "sk_test_slotbook_local_demo"
OUTBOX_BACKEND = "shop.outbox.OutboxEmailBackend"


def demo_files_remove(*, database: Path | None, emulator_db: Path, outbox: Path) -> list[Path]:
    """Delete the demo's SQLite database and the emulator's state (each with its WAL files) and
    the e-mails in the outbox, so that the next start loads fresh demo data. Returns what was
    deleted; a file that is not there is no error."""
    removed = []
    for base in (database, emulator_db):
        if base is None:
            continue
        for path in (base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")):
            if path.is_file():
                path.unlink()
                removed.append(path)
    if outbox.is_dir():
        for path in sorted(outbox.iterdir()):
            if path.is_file() and path.suffix in {".txt", ".html"}:
                path.unlink()
                removed.append(path)
    return removed


def wait_for_port(host: str, port: int, *, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"The process meant to listen on port {port} exited with code {process.returncode}.")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise CommandError(f"Nothing answered on {host}:{port} after {timeout:.0f} seconds.")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reconcile_every(
    seconds: float, command: list[str], *, env: dict, stop: threading.Event, write: Callable[[str], None]
) -> threading.Thread:
    """The periodic work Celery beat does in production, for a demo with no broker: run `command`
    (`manage.py reconcile`) every `seconds` until `stop` is set, passing on what it could not
    settle (its stderr) to `write`."""

    def loop() -> None:
        while not stop.wait(seconds):
            run = subprocess.run(command, env=env, capture_output=True, text=True)
            for line in run.stderr.splitlines():
                write(line)

    thread = threading.Thread(target=loop, name="demo-reconcile", daemon=True)
    thread.start()
    return thread


class Command(BaseCommand):
    help = "Run the site with the Stripe emulator and demo data, and print the address to open."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="Port of the site (default 8000).")
        parser.add_argument(
            "--emulator-port", type=int, default=12111, help="Port of the Stripe emulator (default 12111)."
        )
        parser.add_argument(
            "--db",
            help="The site's SQLite database file (default: SQLITE_PATH, or db.sqlite3). "
            "Not with DATABASE_URL, which the demo then uses instead.",
        )
        parser.add_argument(
            "--emulator-db",
            default=str(settings.BASE_DIR / ".emulator.sqlite3"),
            help="The emulator's state file (default .emulator.sqlite3).",
        )
        parser.add_argument(
            "--outbox",
            default=settings.EMAIL_FILE_PATH,
            help="Folder where each e-mail the site sends is written as a file (default outbox/).",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Start from fresh demo data: delete the database file, the emulator's state and the outbox's e-mails.",
        )

    def handle(self, *args, port: int, emulator_port: int, db: str | None, emulator_db: str, outbox: str, reset: bool,
               **options):
        env = dict(os.environ)
        env.setdefault("DJANGO_DEBUG", "true")
        site_url = f"http://127.0.0.1:{port}"
        env.setdefault("SITE_URL", site_url)
        database = None
        if env.get("DATABASE_URL"):
            if db or reset:
                raise CommandError(
                    "--db and --reset work on the demo's SQLite file, but DATABASE_URL is set: unset it, "
                    "or reset that database yourself (manage.py flush)."
                )
            self.stdout.write("Database: DATABASE_URL.")
        else:
            database = Path(db or settings.DATABASES["default"]["NAME"]).resolve()
            env["SQLITE_PATH"] = str(database)
            self.stdout.write(f"Database: {database}")
        outbox_dir = Path(outbox).resolve()
        env.setdefault("EMAIL_BACKEND", OUTBOX_BACKEND)
        env["EMAIL_FILE_PATH"] = str(outbox_dir)
        if env["EMAIL_BACKEND"] == OUTBOX_BACKEND:
            outbox_dir.mkdir(parents=True, exist_ok=True)
            mail_line = f"E-mails the site sends: one file each in {outbox_dir}/"
        else:
            mail_line = f"E-mails the site sends go through EMAIL_BACKEND={env['EMAIL_BACKEND']}."
        self.stdout.write(mail_line)
        children: list[subprocess.Popen] = []
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]

        stop_reconciling = threading.Event()

        def stop_children(*_):
            stop_reconciling.set()
            for child in reversed(children):
                if child.poll() is None:
                    child.terminate()
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()

        for needed in (port,) + (() if env.get("STRIPE_SECRET_KEY") else (emulator_port,)):
            if not port_is_free(needed):
                raise CommandError(f"Port {needed} is already in use. Stop what runs there or pass another port.")

        if reset:
            removed = demo_files_remove(database=database, emulator_db=Path(emulator_db).resolve(), outbox=outbox_dir)
            self.stdout.write(f"Reset: {len(removed)} files deleted; loading fresh demo data.")

        using_real_stripe = bool(env.get("STRIPE_SECRET_KEY"))
        connect = settings.CONNECT_ENABLED
        if connect:
            for name, value in DEMO_PLATFORM_FEE.items():
                env.setdefault(name, value)
        try:
            if using_real_stripe:
                self.stdout.write("Using the Stripe account of STRIPE_SECRET_KEY.")
            else:
                emulator = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "stripe_emulator",
                        "--port",
                        str(emulator_port),
                        "--db",
                        emulator_db,
                        "--forward-to",
                        f"{site_url}/stripe/webhook/",
                        "--webhook-secret",
                        DEMO_WEBHOOK_SECRET,
                        # Connected accounts' events (CONNECT_ENABLED) reach the Connect endpoint.
                        "--forward-connect-to",
                        f"{site_url}/stripe/connect/webhook/",
                        "--connect-webhook-secret",
                        DEMO_CONNECT_WEBHOOK_SECRET,
                        "--log-level",
                        "WARNING",
                        "--account-name",
                        "Slotbook",
                    ],
                    cwd=settings.BASE_DIR,
                )
                children.append(emulator)
                wait_for_port("127.0.0.1", emulator_port, timeout=20, process=emulator)
                env.update(
                    STRIPE_SECRET_KEY=DEMO_SECRET_KEY,
                    STRIPE_API_BASE=f"http://127.0.0.1:{emulator_port}",
                    STRIPE_WEBHOOK_SECRET=DEMO_WEBHOOK_SECRET,
                    STRIPE_CONNECT_WEBHOOK_SECRET=DEMO_CONNECT_WEBHOOK_SECRET,
                )
                self.stdout.write(f"Stripe emulator on http://127.0.0.1:{emulator_port} (state in {emulator_db}).")

            for step in (["migrate", "--noinput"], ["loaddemo"]):
                subprocess.run([*manage, *step], env=env, check=True)

            server = subprocess.Popen([*manage, "runserver", f"127.0.0.1:{port}"], env=env)
            children.append(server)
            wait_for_port("127.0.0.1", port, timeout=30, process=server)
            if not using_real_stripe:
                # The demo bookings' webhooks are delivered now that the site answers: the address
                # to open is printed after their log lines, not buried under them.
                from stripe_emulator.control import ControlError, EmulatorControl

                try:
                    EmulatorControl(env["STRIPE_API_BASE"], timeout=70).wait_for_webhooks(timeout=60)
                except (ControlError, OSError):
                    pass
            free_code = (
                ""
                if using_real_stripe or connect
                else f"Or book for free: the 100%-off promotion code {DEMO_FREE_PROMOTION_CODE} (Harbour Kayaks) or NORD100 (Atelier Nord) on the payment page.\n"
            )
            if connect:
                free_code = (
                    f"Stripe Connect is on: Harbour Kayaks and Atelier Nord are paid on their own connected accounts "
                    f"(platform fee {env['PLATFORM_FEE_PERCENT']}% + {env['PLATFORM_FEE_FIXED']} minor units); "
                    "Studio Lumen (sign in as studio) has not finished onboarding, so its listing is not taking bookings yet.\n"
                    f"Platform fees earned: {site_url}/admin/platform-fees/ (a staff user: manage.py createsuperuser)\n"
                )
            self.stdout.write(
                self.style.SUCCESS(f"\nSlotbook is running: open {site_url}/\n")
                + f"Merchant dashboard: {site_url}/merchant/ (sign in as harbour or atelier"
                + (", or studio" if connect else "")
                + ", password slotbook-demo)\n"
                + "Pay with the test card 4242 4242 4242 4242, any future expiry and any CVC.\n"
                + free_code
                + mail_line
                + "\nCtrl-C stops everything."
            )
            if env.get("CELERY_BROKER_URL"):
                self.stdout.write("CELERY_BROKER_URL is set: run `celery -A config worker` and `celery -A config beat` too.")
            else:
                reconcile_every(
                    settings.RECONCILE_EVERY_SECONDS,
                    [*manage, "reconcile"],
                    env=env,
                    stop=stop_reconciling,
                    write=self.stderr.write,
                )
                # And the reminder e-mails due, as beat's `reminders` entry does.
                reconcile_every(
                    settings.REMINDERS_EVERY_SECONDS,
                    [*manage, "sendreminders"],
                    env=env,
                    stop=stop_reconciling,
                    write=self.stderr.write,
                )
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            failed = [child for child in children if child.poll() not in (None, 0)]
            if failed:
                raise CommandError("A process stopped unexpectedly; its output is above.")
        except subprocess.CalledProcessError as error:
            raise CommandError(f"{' '.join(error.cmd[1:])} failed with exit code {error.returncode}.") from None
        except KeyboardInterrupt:
            self.stdout.write("\nStopping.")
        finally:
            stop_children()
