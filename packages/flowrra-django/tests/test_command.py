"""``manage.py flowrra``: the ``flowrra`` command's own sub-commands, options, output and
exit status, with Django set up and the project's app put in."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import django
import pytest
from conftest import PROJECT, project_env
from flowrra_django.management.commands.flowrra import flowrra_argv
from flowrra_django.project import SPEC

from flowrra import cli


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env={**os.environ, **project_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("given", "passed"),
    [
        (["worker"], ["worker", SPEC]),
        (["worker", "-c", "8", "--threads", "2"], ["worker", SPEC, "-c", "8", "--threads", "2"]),
        (
            ["--log-level", "debug", "status", "--json"],
            ["--log-level", "debug", "status", SPEC, "--json"],
        ),
        (
            ["scheduler", "--store", "sqlite:///s.db"],
            ["scheduler", SPEC, "--store", "sqlite:///s.db"],
        ),
        (["status", "--settings", "x.settings", "--pythonpath=."], ["status", SPEC]),
        (["demo"], ["demo"]),
        (["--version"], ["--version"]),
        ([], []),
    ],
)
def test_arguments_go_to_flowrra_with_the_app(given: list[str], passed: list[str]) -> None:
    assert flowrra_argv(given) == passed


def test_the_app_spec_is_the_projects_app() -> None:
    from flowrra_django import get_app

    assert cli.load_app(SPEC) is get_app()


def test_sub_command_help_is_flowrras() -> None:
    done = manage("flowrra", "worker", "--help")
    assert done.returncode == 0, done.stderr
    assert "--concurrency" in done.stdout and "--threads" in done.stdout


def test_without_a_command_it_prints_flowrras_help_and_fails() -> None:
    done = manage("flowrra")
    assert done.returncode == 2
    assert "worker" in done.stdout and "status" in done.stdout and "scheduler" in done.stdout


def test_a_wrong_option_fails_as_flowrra_does() -> None:
    done = manage("flowrra", "worker", "-c", "0")
    assert done.returncode == 2
    assert "must be >= 1" in done.stderr


def test_an_unreachable_broker_exits_1() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = manage("flowrra", "status", env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert done.returncode == 1
    assert "flowrra: error: cannot read the broker's status" in done.stderr


def test_bad_settings_stop_the_command_with_what_to_do() -> None:
    """The shop's tasks.py calls get_app() as it is imported, at startup: a broker URL no
    plugin serves stops manage.py there, naming what to install."""
    done = manage("flowrra", "status", env={"REDIS_URL": "nats://localhost"})
    assert done.returncode == 1
    assert "install a package that registers 'nats'" in done.stderr


@pytest.mark.skipif(django.VERSION >= (6, 0), reason="Django 5.2 has no django.tasks")
def test_on_django_5_the_tasks_backend_says_what_it_needs() -> None:
    with pytest.raises(ImportError, match=r"Django 6\.0"):
        import flowrra_django.tasks  # noqa: F401
