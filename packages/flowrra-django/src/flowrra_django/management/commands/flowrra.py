"""``manage.py flowrra COMMAND ...``: the ``flowrra`` command (``worker``, ``status``,
``scheduler`` and every sub-command a plugin adds), run with Django set up, on the
project's app.

The arguments go to :func:`flowrra.cli.main` as they are, with the app
(``flowrra_django.project:app``, which is :func:`flowrra_django.get_app`) put in after the
sub-command's name: ``manage.py flowrra worker -c 8`` is ``flowrra worker <the app> -c 8``.
Every installed app's ``tasks.py`` is imported first, whatever ``FLOWRRA["AUTODISCOVER"]``
says, so the worker knows every task. The exit status is ``flowrra``'s.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand

from flowrra import cli
from flowrra_django.discovery import autodiscover_tasks
from flowrra_django.project import SPEC

#: Options Django's ``manage.py`` reads before any command runs: dropped if they come
#: after the sub-command (as ``manage.py flowrra worker --settings=...``).
_DJANGO_OPTIONS = ("--settings", "--pythonpath")


def _without_django_options(argv: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _DJANGO_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in _DJANGO_OPTIONS)):
            kept.append(arg)
    return kept


def flowrra_argv(argv: list[str]) -> list[str]:
    """``argv`` for :func:`flowrra.cli.main`: the project's app after the sub-command."""
    argv = _without_django_options(argv)
    commands = _sub_commands()
    for index, arg in enumerate(argv):
        if arg in commands:
            if arg in _TAKES_NO_APP:
                return argv
            return [*argv[: index + 1], SPEC, *argv[index + 1 :]]
    return argv


#: Sub-commands of ``flowrra`` that take no app.
_TAKES_NO_APP = frozenset({"demo"})


def _sub_commands() -> set[str]:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Run a flowrra command on this project's app, with Django set up: worker, status, "
        "scheduler (with flowrra-scheduler). `manage.py flowrra COMMAND --help` tells more."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "flowrra_args",
            nargs=argparse.REMAINDER,
            metavar="COMMAND ...",
            help="a flowrra sub-command and its options, as `flowrra` takes them, without the app",
        )

    def handle(self, *args: Any, flowrra_args: list[str], **options: Any) -> None:
        argv = flowrra_argv(list(flowrra_args))
        if argv:
            autodiscover_tasks()
        code = cli.main(argv)
        if code:
            sys.exit(code)
