"""Settings every local run of the site's code needs: plain HTTP to a local server, static files
from the finders, mail kept in memory, and cheap password hashing."""

LOCAL_RUN_SETTINGS = {
    "SECURE_SSL_REDIRECT": False,
    "SESSION_COOKIE_SECURE": False,
    "CSRF_COOKIE_SECURE": False,
    "SECURE_HSTS_SECONDS": 0,
    "STORAGES": {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    },
    "WHITENOISE_AUTOREFRESH": True,
    "WHITENOISE_USE_FINDERS": True,
    "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    # Hashing test passwords at production strength would dominate the suite's time.
    "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
}
