import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_debug_off():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "x7#kq2!v9zR4mT8wL1pN6bH3cF5jD0sG-yA_eU+oI=rW2tY9uQ",
            "DJANGO_ALLOWED_HOSTS": "book.example.com",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_with_debug_off_and_no_secret_key_the_site_refuses_to_start():
    for env in ({"DJANGO_DEBUG": "false"}, {}, {"DJANGO_SECRET_KEY": "  "}):
        result = run_manage("check", env=env)

        assert result.returncode != 0
        assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set." in result.stderr
        assert "will not start with the public development key" in result.stderr


def test_the_demo_and_a_development_run_start_without_a_secret_key():
    assert run_manage("check", env={"DJANGO_DEBUG": "true"}).returncode == 0
    demo = run_manage("demo", "--help", env={})
    assert demo.returncode == 0, demo.stderr
    assert "--emulator-port" in demo.stdout


def settings_as_seen_with(env: dict[str, str]) -> dict:
    code = (
        "import json; from django.conf import settings; "
        "db = settings.DATABASES['default']; "
        "print(json.dumps({'engine': db['ENGINE'], 'name': str(db['NAME']), 'options': db.get('OPTIONS', {}), "
        "'secrets': settings.STRIPE_WEBHOOK_SECRETS, 'api_base': settings.STRIPE_API_BASE, "
        "'storage': settings.STORAGES['staticfiles']['BACKEND'], "
        "'cookies': [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SESSION_COOKIE_HTTPONLY, "
        "settings.CSRF_COOKIE_HTTPONLY], 'hsts': settings.SECURE_HSTS_SECONDS, 'ssl': settings.SECURE_SSL_REDIRECT}, "
        "default=str))"
    )
    result = run_manage("shell", "--no-imports", "-c", code, env={"DJANGO_SECRET_KEY": "k" * 50, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sqlite_is_the_default_database_and_waits_for_the_write_lock():
    seen = settings_as_seen_with({})
    assert seen["engine"] == "django.db.backends.sqlite3"
    assert seen["options"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in seen["options"]["init_command"]


def test_database_url_selects_postgresql_and_webhook_secrets_split_on_commas():
    seen = settings_as_seen_with(
        {
            "DATABASE_URL": "postgres://shop:pw@db.example.com:5433/bookings",
            "STRIPE_WEBHOOK_SECRET": "whsec_new, whsec_old",
            "STRIPE_API_BASE": "http://127.0.0.1:12111/",
        }
    )
    assert seen["engine"] == "django.db.backends.postgresql"
    assert seen["name"] == "bookings"
    assert seen["secrets"] == ["whsec_new", "whsec_old"]
    assert seen["api_base"] == "http://127.0.0.1:12111"
    assert seen["storage"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"


def test_with_debug_off_cookies_are_secure_and_http_only_and_https_is_enforced():
    seen = settings_as_seen_with({"DJANGO_DEBUG": "false"})
    assert seen["cookies"] == [True, True, True, True]
    assert seen["hsts"] == 31536000
    assert seen["ssl"] is True


def test_a_malformed_boolean_setting_is_refused_with_its_name():
    result = run_manage("check", env={"DJANGO_DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be true or false" in result.stderr


@pytest.mark.django_db
def test_pages_load_only_local_assets(client):
    html = client.get(reverse("shop:catalog")).content.decode()
    assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".css") for a in assets)
    assert any("htmx-2.0.11.min.js" in a for a in assets)
    assert all(a.startswith("/static/") for a in assets), assets


def test_vendored_htmx_is_the_pinned_release():
    vendored = ROOT / "static" / "vendor" / "htmx-2.0.11.min.js"
    assert vendored.read_text().startswith("var htmx=function()")
    assert 'version:"2.0.11"' in vendored.read_text()
