"""The README's "Run it" and "Test it", as a newcomer follows them: the commands it names exist
and do what it says, on a machine whose Python refuses `pip install` outside a virtual
environment (simulated with PIP_REQUIRE_VIRTUALENV), and the demo it starts serves the site,
takes the 100%-off code and writes its e-mails to the outbox folder it prints."""

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.core.management.base import BaseCommand

from shop.demo import DEMO_FREE_PROMOTION_CODE
from shop.management.commands.demo import Command as DemoCommand
from shop.management.commands.demo import demo_files_remove

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    return README[start : README.index("\n## ", start + 1)]


def first_command(text: str) -> str:
    return re.search(r"```sh\n(.*?)\n```", text, re.S).group(1)


def scratch_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "STRIPE_", "SQLITE_PATH"))}
    env.pop("EMAIL_BACKEND", None)
    env.pop("SITE_URL", None)
    return {**env, "PIP_REQUIRE_VIRTUALENV": "true", **extra}


def test_the_readme_runs_the_site_and_the_tests_with_one_committed_executable_script_each():
    assert first_command(section("Run it")) == "./run"
    assert first_command(section("Test it")) == "./test"
    for name, runs in (("run", ".venv/bin/python manage.py demo"), ("test", ".venv/bin/python -m pytest")):
        script = ROOT / name
        assert script.stat().st_mode & stat.S_IXUSR, f"{name} is not executable"
        text = script.read_text()
        assert "source scripts/venv.sh" in text and f'exec {runs} "$@"' in text
    assert "python3 -m venv .venv\n.venv/bin/pip install -r requirements.txt\n.venv/bin/python manage.py demo" in README


def test_every_flag_of_the_demo_is_in_the_readme_and_every_flag_the_readme_names_exists():
    common = {o for a in BaseCommand().create_parser("manage.py", "demo")._actions for o in a.option_strings}
    flags = {
        o for a in DemoCommand().create_parser("manage.py", "demo")._actions for o in a.option_strings
    } - common
    documented = set(re.findall(r"^\| `(--[a-z-]+)` \|", section("Run it"), re.M))
    assert flags == {"--port", "--emulator-port", "--db", "--emulator-db", "--outbox", "--reset"}
    assert documented == flags

    shown = subprocess.run(
        [sys.executable, "manage.py", "demo", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=scratch_env(),
    )
    assert shown.returncode == 0, shown.stderr
    assert all(flag in shown.stdout for flag in flags)


def test_reset_deletes_the_database_the_emulator_state_and_the_outbox_mail_and_nothing_else(tmp_path):
    database, emulator_db, outbox = tmp_path / "db.sqlite3", tmp_path / "emulator.sqlite3", tmp_path / "outbox"
    outbox.mkdir()
    doomed = [database, tmp_path / "db.sqlite3-wal", emulator_db, tmp_path / "emulator.sqlite3-shm",
              outbox / "1-a.txt", outbox / "1-a.html"]
    kept = [tmp_path / "db.sqlite3.backup", outbox / "notes.md"]
    for path in doomed + kept:
        path.write_text("x")

    removed = demo_files_remove(database=database, emulator_db=emulator_db, outbox=outbox)

    assert sorted(removed) == sorted(doomed)
    assert [p for p in doomed + kept if p.exists()] == kept
    assert demo_files_remove(database=database, emulator_db=emulator_db, outbox=outbox) == []


@pytest.fixture
def scratch_project(tmp_path):
    """run, test, scripts/venv.sh and .ci/run as committed, beside a requirements.txt that needs
    no download, a manage.py and a pytest that say how they were started, and an audit stand-in."""
    for name in ("run", "test", "scripts/venv.sh", ".ci/run"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / "requirements.txt").write_text("# nothing to download\n")
    report = "import sys; print('ran', sys.prefix, sys.argv[1:])\n"
    (tmp_path / "manage.py").write_text(report)
    (tmp_path / "pytest.py").write_text(report + "raise SystemExit(5)\n")
    (tmp_path / ".ci" / "audit_dependencies.py").write_text("import sys; print('audited with', sys.prefix)\n")
    return tmp_path


def run_script(project: Path, *args: str, **env) -> subprocess.CompletedProcess:
    python = shutil.which("python3") or sys.executable
    return subprocess.run(
        [str(project / args[0]), *args[1:]], cwd=project, capture_output=True, text=True, timeout=120,
        env=scratch_env(PYTHON=python, **env),
    )


def test_the_scripts_make_the_venv_once_and_install_only_when_requirements_change(scratch_project):
    venv = scratch_project / ".venv"

    first = run_script(scratch_project, "run", "--port", "9000")
    assert first.returncode == 0, first.stderr
    assert "creating the virtual environment .venv" in first.stderr
    assert "installing requirements.txt into .venv" in first.stderr
    assert first.stdout.strip() == f"ran {venv} ['demo', '--port', '9000']"

    again = run_script(scratch_project, "run")
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.strip() == f"ran {venv} ['demo']"

    (scratch_project / "requirements.txt").write_text("# nothing to download, still\n")
    tested = run_script(scratch_project, "test", "-q", "tests/shop")
    assert "creating" not in tested.stderr and "installing requirements.txt into .venv" in tested.stderr
    assert tested.stdout.strip() == f"ran {venv} ['-q', 'tests/shop']"
    assert tested.returncode == 5, "./test must hand back pytest's own exit code"


def test_ci_run_uses_the_venv_for_the_audit_and_the_readme_test_command_and_fails_when_no_test_ran(scratch_project):
    def answers(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    if not (Path("/usr/bin/chromium").exists() and answers(5432)):
        pytest.skip(".ci/run would install Chromium or start PostgreSQL here")
    ci = subprocess.run(
        ["bash", ".ci/run"], cwd=scratch_project, capture_output=True, text=True, timeout=120,
        env=scratch_env(PYTHON=shutil.which("python3") or sys.executable),
    )
    venv = scratch_project / ".venv"
    assert f"audited with {venv}" in ci.stdout
    assert f"ran {venv} []" in ci.stdout
    assert "against postgres://postgres@127.0.0.1:5432/test" in ci.stdout
    assert ci.returncode == 5
    assert "pytest collected no tests: that is a failure" in ci.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_demo_serves_the_site_from_fresh_data_books_free_with_the_code_and_writes_the_mail_to_its_outbox(
    tmp_path,
):
    from stripe_emulator.control import EmulatorControl

    port, emulator_port = free_port(), free_port()
    database, outbox = tmp_path / "demo.sqlite3", tmp_path / "outbox"
    outbox.mkdir()
    database.write_text("left over from an old run, not even a database")
    (outbox / "20200101-000000-001-old@example.com-old.txt").write_text("old")
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--emulator-port", str(emulator_port),
         "--db", str(database), "--emulator-db", str(tmp_path / "emulator.sqlite3"), "--outbox", str(outbox),
         "--reset"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=scratch_env(),
    )
    lines: list[str] = []
    running = threading.Event()

    def read():
        for line in demo.stdout:
            lines.append(line)
            if "Slotbook is running" in line:
                running.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert running.wait(90), "".join(lines)[-3000:]
        output = "".join(lines)
        banner = output.index("Slotbook is running")
        # The webhook log names the event's account since Connect ("account=-" for the platform's).
        assert re.search(r"checkout\.session\.completed (account=\S+ )?result=processed", output[:banner]), (
            "the banner is buried"
        )
        assert f"E-mails the site sends: one file each in {outbox}/" in output
        assert f"promotion code {DEMO_FREE_PROMOTION_CODE}" in output
        assert not (outbox / "20200101-000000-001-old@example.com-old.txt").exists()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        site = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect()
        )
        assert "Sunrise kayak tour" in opener.open(f"{site}/").read().decode()
        page = opener.open(f"{site}/l/sea-cave-explorer/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        slot = re.search(r'<input type="radio" name="slot" value="(\d+)"(?![^>]*\bdisabled\b)', page).group(1)
        form = {"csrfmiddlewaretoken": token, "slot": slot, "quantity": "1",
                "customer_name": "New Comer", "customer_email": "newcomer@example.com"}
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(f"{site}/l/sea-cave-explorer/book/", urllib.parse.urlencode(form).encode())
        assert redirect.value.code == 303
        session_id = re.search(r"cs_\w+", redirect.value.headers["Location"]).group(0)
        control = EmulatorControl(f"http://127.0.0.1:{emulator_port}", timeout=10)
        paid = control.pay_session(
            session_id, email="newcomer@example.com", name="New Comer", promotion_code=DEMO_FREE_PROMOTION_CODE
        )
        assert paid["amount_total"] == 0
        control.wait_for_webhooks(timeout=20)

        [mail] = outbox.glob("*.txt")
        assert mail.name.endswith("-newcomer@example.com-you-re-booked-sea-cave-explorer.txt")
        assert "Subject: You're booked: Sea cave explorer" in mail.read_text(encoding="utf-8")
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
    assert demo.returncode == 0, "".join(lines)[-3000:]
    for stopped in (port, emulator_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", stopped)) != 0, f"something still answers on {stopped}"
