"""The one settings module. Everything that differs between machines comes from the environment.

Development defaults are safe to run locally; production sets DJANGO_DEBUG=false,
DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, DATABASE_URL and the Stripe keys (see README).
"""

from pathlib import Path

import dj_database_url
import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class Env(environ.Env):
    """django-environ's reader, kept to the site's rules: values are stripped, a blank variable means
    its default, a "$NAME" value is taken as it is (a secret may start with "$"), lists are
    comma-separated without blanks, and a boolean or a number that cannot be read stops the start
    with the variable's name."""

    TRUE = frozenset({"1", "true", "yes", "on"})
    FALSE = frozenset({"0", "false", "no", "off"})

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        raw = self.ENVIRON.get(var)
        if raw is None or raw.strip() == "":
            if default is self.NOTSET:
                raise ImproperlyConfigured(f"Set the {var} environment variable.")
            return default
        value = raw.strip()
        if cast is bool:
            if value.lower() in self.TRUE:
                return True
            if value.lower() in self.FALSE:
                return False
            raise ImproperlyConfigured(f"{var} must be true or false, not {raw!r}.")
        if cast is int:
            try:
                return int(value)
            except ValueError:
                raise ImproperlyConfigured(f"{var} must be a whole number, not {raw!r}.") from None
        if cast is float:
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if number != number or number in (float("inf"), float("-inf")):
                raise ImproperlyConfigured(f"{var} must be a number, not {raw!r}.")
            return number
        if cast is list:
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


env = Env()

DEBUG = env.bool("DJANGO_DEBUG", False)

# The development key is public: it signs sessions and reset links only with DEBUG on.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. With DEBUG off the site will not start with the public "
            "development key: set DJANGO_SECRET_KEY to a long random value (on your own machine, "
            "DJANGO_DEBUG=true runs with the development key)."
        )
    SECRET_KEY = "django-insecure-development-key-set-DJANGO_SECRET_KEY-in-production"

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# The public address of the site, used in links that leave it (Stripe redirects, e-mails).
# When empty, links are built from the incoming request.
SITE_URL = env.str("SITE_URL", default="").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.forms",  # its widget templates, for the TemplatesSetting form renderer
    "django_htmx",
    "django_ratelimit",
    "bookings",
    "payments",
    "shop",
    "merchant",
]

MIDDLEWARE = [
    "bookings.background.TasksAfterResponseMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "common.middleware.SecurityHeadersMiddleware",
    "common.middleware.MalformedRequestMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

# Forms render with the site's templates: templates/django/forms/field.html is every field's markup.
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_environment() -> dict:
    url = env.str("DATABASE_URL", default="")
    if url:
        config = dj_database_url.parse(
            url,
            conn_max_age=env.int("DATABASE_CONN_MAX_AGE", 0),
            conn_health_checks=True,
        )
        if config["ENGINE"] == "django.db.backends.postgresql" and env.bool("DATABASE_POOL", False):
            # psycopg's pool replaces persistent connections; Django refuses both at once.
            config["CONN_MAX_AGE"] = 0
            config.setdefault("OPTIONS", {})["pool"] = {
                "min_size": env.int("DATABASE_POOL_MIN", 2),
                "max_size": env.int("DATABASE_POOL_MAX", 10),
                "timeout": 10,
            }
        return config
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": env.str("SQLITE_PATH", default="") or BASE_DIR / "db.sqlite3",
        # IMMEDIATE takes the write lock at BEGIN, so a transaction that reads before it
        # writes waits for the lock instead of failing with "database is locked".
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        # A file, not Django's shared in-memory database: concurrency tests use real threads.
        "TEST": {"NAME": env.str("SQLITE_TEST_PATH", default="") or BASE_DIR / ".test-db.sqlite3"},
    }


DATABASES = {"default": database_from_environment()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Django's ModelBackend behind the sign-in limits, so that every sign-in form (the admin's too)
# is limited the same way.
AUTHENTICATION_BACKENDS = ["common.ratelimits.SignInLimitedBackend"]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "merchant:dashboard"
LOGOUT_REDIRECT_URL = "shop:catalog"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", "Europe/London")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Rate limits are counted, and the storefront's fragments kept, in this cache: with several web
# processes, share it through Redis.
CACHES = {
    "default": (
        {
            # Django's RedisCache, keeping one Redis client per pool (common/cache.py).
            "BACKEND": "common.cache.SharedClientRedisCache",
            "LOCATION": env.str("REDIS_URL", default=""),
            # Sites (or benchmark runs) sharing one Redis keep apart with a prefix each.
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default=""),
        }
        if env.str("REDIS_URL", default="")
        else {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "slotbook",
            # Django's default of 300 entries would evict the status panels of a few hundred
            # customers polling at once; 10,000 small pages and counters are a few tens of MB.
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    )
}
RATELIMIT_USE_CACHE = "default"
RATELIMIT_IP_META_KEY = "common.ratelimits.client_ip"
# django-ratelimit refuses a per-process cache; one process (development, tests) is fine with it.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
# How many proxies in front of the site append to X-Forwarded-For (0: trust REMOTE_ADDR only).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", 0)
RATE_LIMITS = {
    "checkout_per_ip": env.str("RATE_LIMIT_CHECKOUT_PER_IP", "20/10m"),
    "checkout_per_email": env.str("RATE_LIMIT_CHECKOUT_PER_EMAIL", "10/h"),
    "token_misses_per_ip": env.str("RATE_LIMIT_TOKEN_MISSES_PER_IP", "30/10m"),
    "signin_per_ip": env.str("RATE_LIMIT_SIGNIN_PER_IP", "20/10m"),
    "signin_per_username": env.str("RATE_LIMIT_SIGNIN_PER_USERNAME", "5/10m"),
    # Customers asking for a link to their receipts: per address, and per e-mail they ask for.
    "receipts_link_per_ip": env.str("RATE_LIMIT_RECEIPTS_LINK_PER_IP", "10/h"),
    "receipts_link_per_email": env.str("RATE_LIMIT_RECEIPTS_LINK_PER_EMAIL", "3/15m"),
    # Joining a waitlist sends an e-mail: limited like checkout starts, per address and per e-mail from one address.
    "waitlist_per_ip": env.str("RATE_LIMIT_WAITLIST_PER_IP", "20/10m"),
    "waitlist_per_email": env.str("RATE_LIMIT_WAITLIST_PER_EMAIL", "10/h"),
}

EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
# The folder where shop.outbox.OutboxEmailBackend (the demo's) writes each e-mail as a file.
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default="") or str(BASE_DIR / "outbox")
EMAIL_HOST = env.str("EMAIL_HOST", "localhost")
EMAIL_PORT = env.int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "Slotbook <bookings@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The operator's addresses (comma-separated): told when a merchant's connected account is
# rejected or disconnects the platform.
ADMINS = [(address, address) for address in env.list("DJANGO_ADMINS", default=[])]

# Stripe. With STRIPE_API_BASE unset the SDK talks to api.stripe.com; the local emulator
# sets it to http://127.0.0.1:12111. STRIPE_WEBHOOK_SECRET may list several secrets
# separated by commas, so a secret can be rotated without dropping events.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRETS = env.list("STRIPE_WEBHOOK_SECRET", default=[])
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="").rstrip("/")
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", 2)
# The fair queue (README, "When Stripe is the limit"): checkout starts may open at most this many
# Checkout Sessions per second across all web processes (a token bucket holding one second's
# worth: in Redis when REDIS_URL is set, else in the database). Stripe allows 25 requests per
# second in test mode and 100 live; the rest is left for status checks and refunds. A start that
# finds the budget spent keeps its seats and waits in line on a page; 0 turns the queue off.
STRIPE_REQUESTS_PER_SECOND = env.float("STRIPE_REQUESTS_PER_SECOND", 20.0)
if STRIPE_REQUESTS_PER_SECOND < 0:
    raise ImproperlyConfigured(f"STRIPE_REQUESTS_PER_SECOND must not be negative, not {STRIPE_REQUESTS_PER_SECOND}.")
# Nobody waits in that line longer than this: their seats are then released and the page says
# Stripe is too busy, with their form kept to try again.
QUEUE_MAX_WAIT_SECONDS = env.int("QUEUE_MAX_WAIT_SECONDS", 120)
if not 5 <= QUEUE_MAX_WAIT_SECONDS <= 15 * 60:
    raise ImproperlyConfigured(f"QUEUE_MAX_WAIT_SECONDS must be between 5 and 900, not {QUEUE_MAX_WAIT_SECONDS}.")
# Where the budget lives across processes: Redis when set (an atomic Lua script), else the database.
STRIPE_BUDGET_REDIS_URL = env.str("REDIS_URL", default="")
STRIPE_BUDGET_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="")
# Extra origins of Stripe-hosted pages (the emulator's --public-url when it differs from its API).
STRIPE_HOSTED_ORIGINS = env.list("STRIPE_HOSTED_ORIGINS", default=[])

# Stripe Connect (README, "Merchants paid through Stripe Connect"). Off: every payment lands in the
# platform's own account (an operator selling their own things). On: each merchant onboards a
# connected account and their bookings are direct charges on it, the platform taking its fee.
CONNECT_ENABLED = env.bool("CONNECT_ENABLED", False)
# The Connect endpoint's signing secret(s), comma-separated for rotation (`stripe listen
# --forward-connect-to` prints it; a Dashboard endpoint listening to "Connected accounts" has its own).
STRIPE_CONNECT_WEBHOOK_SECRETS = env.list("STRIPE_CONNECT_WEBHOOK_SECRET", default=[])
CONNECT_ACCOUNT_TYPE = env.str("CONNECT_ACCOUNT_TYPE", "express").lower()
if CONNECT_ACCOUNT_TYPE not in ("express", "standard"):
    raise ImproperlyConfigured(f"CONNECT_ACCOUNT_TYPE must be express or standard, not {CONNECT_ACCOUNT_TYPE!r}.")
# The country new connected accounts are created in ("" lets Stripe use the platform's).
CONNECT_ACCOUNT_COUNTRY = env.str("CONNECT_ACCOUNT_COUNTRY", default="").upper()
# The platform's fee on each direct charge: PLATFORM_FEE_PERCENT of the price (a decimal, e.g.
# 2.5) plus PLATFORM_FEE_FIXED minor units, the percentage rounded half up to a whole minor unit,
# and never more than the price.
PLATFORM_FEE_PERCENT = env.str("PLATFORM_FEE_PERCENT", "0")
try:
    _fee_percent = float(PLATFORM_FEE_PERCENT)
except ValueError:
    raise ImproperlyConfigured(f"PLATFORM_FEE_PERCENT must be a number, not {PLATFORM_FEE_PERCENT!r}.") from None
if not 0 <= _fee_percent <= 100:
    raise ImproperlyConfigured(f"PLATFORM_FEE_PERCENT must be between 0 and 100, not {PLATFORM_FEE_PERCENT}.")
PLATFORM_FEE_FIXED = env.int("PLATFORM_FEE_FIXED", 0)
if PLATFORM_FEE_FIXED < 0:
    raise ImproperlyConfigured(f"PLATFORM_FEE_FIXED must not be negative, not {PLATFORM_FEE_FIXED}.")
# The refund reasons whose refunds give the platform's fee back too (refund_application_fee):
# by default when the customer got nothing (sold out while paying, hold gone; the time cancelled).
# A refund the merchant makes keeps the fee unless "merchant" is listed.
CONNECT_REFUND_FEE_REASONS = env.list("CONNECT_REFUND_FEE_REASONS", default=["sold_out", "slot_cancelled"])

# benchmarks/load.py mounts a bare view at /_benchmark/bare/ to measure everything else against.
# Never set in production.
BENCHMARK_BARE_VIEW = env.bool("BENCHMARK_BARE_VIEW", False)

# Bookings
BOOKING_MAX_QUANTITY = env.int("BOOKING_MAX_QUANTITY", 10)
# The currency a merchant's first listing is offered in; later ones default to their latest listing's.
LISTING_DEFAULT_CURRENCY = env.str("LISTING_DEFAULT_CURRENCY", "eur").lower()
CHECKOUT_SESSION_MINUTES = env.int("CHECKOUT_SESSION_MINUTES", 30)
# Opening a checkout holds its seats this long (a listing's hold_minutes may say longer); the
# Checkout Session expires when the hold ends. Stripe accepts 30 minutes to 24 hours.
HOLD_MINUTES = env.int("HOLD_MINUTES", CHECKOUT_SESSION_MINUTES)
if not 30 <= HOLD_MINUTES <= 24 * 60:
    raise ImproperlyConfigured(f"HOLD_MINUTES must be between 30 and 1440 (Stripe's limits), not {HOLD_MINUTES}.")
# Seats offered to the first customers on a time's waitlist are held for them this long; an
# offer not taken up in that time passes to the next in line.
WAITLIST_OFFER_MINUTES = env.int("WAITLIST_OFFER_MINUTES", 30)
if not 5 <= WAITLIST_OFFER_MINUTES <= 24 * 60:
    raise ImproperlyConfigured(f"WAITLIST_OFFER_MINUTES must be between 5 and 1440, not {WAITLIST_OFFER_MINUTES}.")
# The success page reads the Checkout Session from Stripe at most this often per booking.
STRIPE_STATUS_CHECK_SECONDS = env.int("STRIPE_STATUS_CHECK_SECONDS", 3)
# The catalog's cards and a listing's times are rendered at most this often per process; the
# seat counts they show are never older (changes made through the site re-render them at once,
# in every process when the cache is shared through REDIS_URL). 0 turns the cache off.
STOREFRONT_CACHE_SECONDS = env.int("STOREFRONT_CACHE_SECONDS", 5)
# With the cache shared through Redis, each process keeps a copy of those fragments and reads the
# shared storefront version at most this often: a change made in another process shows within
# this many seconds (in the process that made it, at once). 0: every page asks Redis.
STOREFRONT_VERSION_CHECK_SECONDS = env.float("STOREFRONT_VERSION_CHECK_SECONDS", 0.25)
# A final booking's status panel is kept this long, and dropped when the booking changes.
FINAL_STATUS_CACHE_SECONDS = env.int("FINAL_STATUS_CACHE_SECONDS", 60)
# A sign-in link e-mailed to a customer (to open their receipts) works once, for this long.
CUSTOMER_SIGNIN_LINK_MINUTES = env.int("CUSTOMER_SIGNIN_LINK_MINUTES", 15)

# Background work (README, "Background work"). With CELERY_BROKER_URL set (Redis in production),
# e-mails, refund submissions, booking follow-ups and checkout closing are tasks for the `worker`
# processes, enqueued after commit, and `beat` runs reconcile every RECONCILE_EVERY_SECONDS. Unset
# (the demo, a laptop, the test suite), the same tasks run in the process that committed, right
# after the commit, and `manage.py demo` runs reconcile itself.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="slotbook")
# A task is acknowledged when it has finished, not when a worker takes it: a worker that dies
# mid-task leaves it to be delivered again (its claims make the second run do nothing twice).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis gives an unacknowledged task to another worker after this long: longer than any task
# with its retries' countdowns (TASK_RETRY_BACKOFF_MAX_SECONDS).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 900),
    # Redis keeps one list per step and a worker takes from the lowest step first.
    "priority_steps": [0, 3, 6, 9],
}
# Every task is published at step 3, beat's fair-queue driver at 0: during an on-sale the
# confirmation e-mails of a thousand buyers queue up, and the driver must not wait behind them
# (it would expire unrun, and the line stand still).
CELERY_TASK_DEFAULT_PRIORITY = 3
QUEUE_DRIVE_PRIORITY = 0
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A task whose Stripe or SMTP call failed is tried again after 2, 4, 8, ... seconds (with
# jitter, at most this long apart), this many times; reconcile finishes whatever is left.
TASK_RETRY_MAX = env.int("TASK_RETRY_MAX", 8)
TASK_RETRY_BACKOFF_MAX_SECONDS = env.int("TASK_RETRY_BACKOFF_MAX_SECONDS", 300)
RECONCILE_EVERY_SECONDS = env.int("RECONCILE_EVERY_SECONDS", 60)
# How often beat starts the fair queue's driver, and so how long each run drives the line.
QUEUE_DRIVE_SECONDS = 2
REMINDERS_EVERY_SECONDS = env.int("REMINDERS_EVERY_SECONDS", 60)
CELERY_BEAT_SCHEDULE = {
    "reconcile": {
        "task": "slotbook.reconcile",
        "schedule": RECONCILE_EVERY_SECONDS,
        # A run still queued when the next one is due is dropped: the next one does its work.
        "options": {"expires": RECONCILE_EVERY_SECONDS},
    },
    # The fair queue's driver (README, "When Stripe is the limit"): each run gives turns at the
    # budget's pace until the next is due (or nobody waits), and releases the seats of people
    # who left the page once they pass the bound.
    "checkout-queue": {
        "task": "slotbook.checkout_queue_drive",
        "schedule": QUEUE_DRIVE_SECONDS,
        "options": {"expires": QUEUE_DRIVE_SECONDS, "priority": QUEUE_DRIVE_PRIORITY},
    },
    # The reminder e-mails due (README, "Reminders"): every minute, so one goes out within a
    # minute of its time; a run still queued when the next is due is dropped.
    "reminders": {
        "task": "slotbook.reminders_send",
        "schedule": REMINDERS_EVERY_SECONDS,
        "options": {"expires": REMINDERS_EVERY_SECONDS},
    },
}

# Production hardening: on whenever DEBUG is off.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_BEHIND_PROXY", True) else None
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Request bodies: forms are small; the webhook view has its own, larger limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024)

LOG_LEVEL = env.str("LOG_LEVEL", "INFO")
# JSON lines for log collectors in production; key=value lines to read in a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", "plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "common.logs.JsonLogFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "bookings": {"level": LOG_LEVEL},
        "shop": {"level": LOG_LEVEL},
        "celery": {"level": LOG_LEVEL},
        "django.request": {"level": "ERROR"},
    },
}

# The booking domain asks for refunds through this class, the only one that knows Stripe.
BOOKINGS_PAYMENT_GATEWAY = "payments.stripe_api.StripeRefundGateway"
