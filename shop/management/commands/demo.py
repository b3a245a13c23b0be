"""`python manage.py demo`: the whole site on one machine, with no Stripe account needed.

Starts the local Stripe emulator (unless STRIPE_SECRET_KEY is set, in which case that Stripe
is used), migrates, loads the demo data, serves the site, and prints the address to open.
"""

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

DEMO_WEBHOOK_SECRET = "whsec_slotbook_local_demo_secret"
DEMO_SECRET_KEY = "sk_test_slotbook_local_demo"


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


class Command(BaseCommand):
    help = "Run the site with the Stripe emulator and demo data, and print the address to open."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="Port of the site (default 8000).")
        parser.add_argument("--emulator-port", type=int, default=12111, help="Port of the Stripe emulator.")
        parser.add_argument(
            "--emulator-db", default=str(settings.BASE_DIR / ".emulator.sqlite3"), help="The emulator's state file."
        )

    def handle(self, *args, port: int, emulator_port: int, emulator_db: str, **options):
        env = dict(os.environ)
        env.setdefault("DJANGO_DEBUG", "true")
        site_url = f"http://127.0.0.1:{port}"
        env.setdefault("SITE_URL", site_url)
        children: list[subprocess.Popen] = []
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]

        def stop_children(*_):
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

        try:
            if env.get("STRIPE_SECRET_KEY"):
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
                )
                self.stdout.write(f"Stripe emulator on http://127.0.0.1:{emulator_port} (state in {emulator_db}).")

            for step in (["migrate", "--noinput"], ["loaddemo"]):
                subprocess.run([*manage, *step], env=env, check=True)

            server = subprocess.Popen([*manage, "runserver", f"127.0.0.1:{port}"], env=env)
            children.append(server)
            wait_for_port("127.0.0.1", port, timeout=30, process=server)
            self.stdout.write(
                self.style.SUCCESS(f"\nSlotbook is running: open {site_url}/\n")
                + f"Merchant dashboard: {site_url}/merchant/ (sign in as harbour or atelier, password slotbook-demo)\n"
                + "Pay with the test card 4242 4242 4242 4242, any future expiry and any CVC. Ctrl-C stops everything."
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
