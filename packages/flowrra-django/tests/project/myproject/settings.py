"""The test project's settings: a shop on PostgreSQL (``SHOP_DATABASE_URL``) whose tasks
run on Redis (``REDIS_URL``), served over WSGI and ASGI; ``reports`` (Django Tasks) on
Django 6.0+."""

import os
from urllib.parse import urlsplit

import django

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "myproject.urls"
WSGI_APPLICATION = "myproject.wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "flowrra_django",
    "shop",
]

_database = urlsplit(os.environ.get("SHOP_DATABASE_URL", "postgresql://postgres@127.0.0.1/shop"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _database.path.lstrip("/"),
        "USER": _database.username or "",
        "PASSWORD": _database.password or "",
        "HOST": _database.hostname or "",
        "PORT": _database.port or "",
        # Persistent connections, checked before reuse: a worker keeps its connection
        # between tasks, and a dropped one is replaced at the next task.
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }
}

FLOWRRA = {
    "BROKER_URL": os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    "BACKEND_URL": os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    "EXECUTOR": {"num_workers": 8, "threads": 4, "max_retries": 0},
}

if django.VERSION >= (6, 0):
    INSTALLED_APPS += ["reports"]
    TASKS = {"default": {"BACKEND": "flowrra_django.tasks.FlowrraBackend"}}
