"""The Flask extension: ``FlowrraFlask(app)`` or ``ext.init_app(app)``.

::

    from flask import Flask
    from flowrra_ui_flask import FlowrraFlask

    web = Flask(__name__)
    web.config["FLOWRRA_BROKER_URL"] = "redis://localhost:6379/0"
    web.config["FLOWRRA_BACKEND_URL"] = "redis://localhost:6379/1"
    flowrra = FlowrraFlask(web)       # web.extensions["flowrra"] is flowrra

    @flowrra.app.task()
    async def send_email(to: str) -> str: ...

With an app factory, build the Flowrra app at module level (where the tasks are
registered) and give it to the extension: ``ext = FlowrraFlask(flowrra=app)``, then
``ext.init_app(web)`` in the factory.

Views stay plain ``def``s: ``send_email.delay(...)``, ``flowrra.app.get_result_sync(...)``
(:mod:`flowrra.portal`). ``flask --app myapp flowrra worker`` runs the workers with the
Flask app loaded (and its app context pushed); each task attempt runs in an app context
of its own (``current_app``, ``g``), as Celery's Flask pattern arranges.
"""

from __future__ import annotations

import contextvars
import sys
from typing import TYPE_CHECKING, Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from flowrra import Flowrra
from flowrra.config import Config

if TYPE_CHECKING:
    from flask.ctx import AppContext

    from flowrra.context import TaskContext
    from flowrra.task import TaskResult

__all__ = ["EXTENSION_KEY", "FlaskAppContext", "FlowrraFlask", "cli", "current"]

#: Where ``init_app`` registers the extension: ``app.extensions["flowrra"]``.
EXTENSION_KEY = "flowrra"
#: The Flowrra app of the Flask app ``flask flowrra ...`` loaded (what the commands run).
current: Flowrra | None = None

_pushed: contextvars.ContextVar[list[AppContext] | None] = contextvars.ContextVar(
    "flowrra_flask_app_context", default=None
)


class FlaskAppContext:
    """Middleware: each task attempt runs in an app context of ``flask_app`` of its own,
    pushed before the attempt (in the attempt's context, which the task and a plain
    ``def`` task's thread see) and popped after it. CPU-bound tasks run in other
    processes and get none."""

    def __init__(self, flask_app: Flask) -> None:
        self.flask_app = flask_app

    def before_attempt(self, task: TaskContext) -> None:
        context = self.flask_app.app_context()
        context.push()
        stack = _pushed.get()
        if stack is None:
            stack = []
            _pushed.set(stack)
        stack.append(context)

    def after_attempt(
        self, task: TaskContext, result: TaskResult | None, exception: BaseException | None
    ) -> None:
        stack = _pushed.get()
        if stack:
            stack.pop().pop()


def _config_from(flask_app: Flask, prefix: str) -> Config:
    values = {
        key: str(value)
        for key, value in flask_app.config.items()
        if key.startswith(prefix) and value is not None
    }
    return Config.from_env(prefix, values)


class FlowrraFlask:
    """Flowrra in a Flask app (see the module docs).

    ``flowrra``: the Flowrra app to use; without it, one is built from the Flask app's
    config (``FLOWRRA_BROKER_URL``, ``FLOWRRA_BACKEND_URL``, and every other
    ``FLOWRRA_<SECTION>_<FIELD>`` that :meth:`flowrra.config.Config.from_env` reads;
    none: in-memory) by :meth:`init_app`.
    ``app_context``: run each task attempt in a Flask app context (default yes).
    """

    def __init__(
        self,
        flask_app: Flask | None = None,
        *,
        flowrra: Flowrra | None = None,
        app_context: bool = True,
        config_prefix: str = "FLOWRRA_",
    ) -> None:
        self._flowrra = flowrra
        self.app_context = app_context
        self.config_prefix = config_prefix
        self.flask_app: Flask | None = None
        if flask_app is not None:
            self.init_app(flask_app)

    @property
    def app(self) -> Flowrra:
        """The Flowrra app: register tasks with ``ext.app.task()``."""
        if self._flowrra is None:
            raise RuntimeError(
                "this FlowrraFlask has no Flowrra app yet: call init_app(flask_app) first, or "
                "pass flowrra=Flowrra.from_urls(...) to FlowrraFlask()"
            )
        return self._flowrra

    def init_app(self, flask_app: Flask) -> None:
        """Register with ``flask_app``: ``flask_app.extensions["flowrra"]``, the ``flask
        flowrra`` commands, and (with ``app_context``) the app context of each task."""
        if self._flowrra is None:
            self._flowrra = Flowrra(_config_from(flask_app, self.config_prefix))
        if EXTENSION_KEY in flask_app.extensions:
            raise RuntimeError(f"{flask_app!r} has a FlowrraFlask already")
        flask_app.extensions[EXTENSION_KEY] = self
        self.flask_app = flask_app
        if self.app_context:
            self._flowrra.add_middleware(FlaskAppContext(flask_app))
        if "flowrra" not in flask_app.cli.commands:
            flask_app.cli.add_command(cli)


def _extension() -> FlowrraFlask:
    extension = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(extension, FlowrraFlask):
        raise click.UsageError(
            f"{current_app.name!r} has no FlowrraFlask: call FlowrraFlask(app) or "
            "ext.init_app(app) in the app (factory) that `flask --app` loads"
        )
    return extension


_PASSTHROUGH: dict[str, Any] = {
    "context_settings": {"ignore_unknown_options": True, "allow_extra_args": True},
    "add_help_option": False,
}


@click.group("flowrra", help="Flowrra commands on this Flask app's Flowrra app.")
def cli() -> None:
    pass


def _run(command: list[str], args: tuple[str, ...]) -> None:
    global current
    from flowrra import cli as flowrra_cli

    current = _extension().app
    spec = f"{__name__}:current"
    code = flowrra_cli.main([*command, spec, *args])
    if code:
        sys.exit(code)


@cli.command(
    "worker", **_PASSTHROUGH, help="Run the workers (`flowrra worker`; --help for its options)."
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def worker(args: tuple[str, ...]) -> None:
    _run(["worker"], args)


@cli.command(
    "scheduler", **_PASSTHROUGH, help="Run the scheduler (`flowrra scheduler`, flowrra-scheduler)."
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def scheduler(args: tuple[str, ...]) -> None:
    _run(["scheduler"], args)


@cli.command(
    "status", **_PASSTHROUGH, help="Print queue depths and live workers (`flowrra status`)."
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def status(args: tuple[str, ...]) -> None:
    _run(["status"], args)


@cli.command(
    "dead-letters",
    **_PASSTHROUGH,
    help="list|requeue|purge the dead letters (`flowrra dead-letters`).",
)
@click.argument("action")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def dead_letters(action: str, args: tuple[str, ...]) -> None:
    _run(["dead-letters", action], args)
