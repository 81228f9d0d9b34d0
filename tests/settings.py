"""Settings for the test suite: SQLite on disk (live servers share it), the in-memory channel layer."""

import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
TEST_APPS = Path(__file__).resolve().parent / "apps"

# A Bokeh extension shipped as a package (tests/extension_package/README.md), importable in
# the test process and in every server the tests start with these settings.
TEST_EXTENSION_PACKAGES = str(Path(__file__).resolve().parent / "extension_package")
if TEST_EXTENSION_PACKAGES not in sys.path:
    sys.path.append(TEST_EXTENSION_PACKAGES)

SECRET_KEY = "tests-only-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "bokehserve_django",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
ASGI_APPLICATION = "tests.asgi.application"

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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "tests" / "test-db.sqlite3",
        "TEST": {"NAME": BASE_DIR / "tests" / "test-db.sqlite3"},
    }
}

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

STATIC_URL = "/static/"
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "bokehserve_django.finders.BokehJSFinder",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

BOKEHSERVE = {
    "APPS": {
        "echo": TEST_APPS / "echo.py",
        "hooks": TEST_APPS / "hooks",
        "empty_columns": TEST_APPS / "empty_columns.py",
        "figure_app": TEST_APPS / "figure_app.py",
        "whoami": TEST_APPS / "whoami.py",
        "notebook": TEST_APPS / "notebook.ipynb",
        "shout": TEST_APPS / "shout.py",
    },
    "SIGN_SESSIONS": False,
}
