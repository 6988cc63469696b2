"""``from flowrra.ui.flask import create_blueprint``, as in flowrra 0.1.8, for Flask and for
Quart: the blueprint of ``flowrra-ui-flask`` (Flask on WSGI, live updates over
Server-Sent Events) or of ``flowrra-ui-quart`` (Quart, live updates over a WebSocket).
``pip install flowrra[ui-flask]`` installs both.

Which one: ``web=`` (the Flask or Quart app) decides; else the one installed; with both
installed, the blueprint is Quart's, and registering it on a Flask app
(``flask_app.register_blueprint(bp)``) registers Flask's instead, so the 0.1.8 code
(``create_blueprint(flowrra)`` then ``register_blueprint``) works with either framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowrra.exceptions import PluginNotFoundError
from flowrra.plugins import EXTENSIONS, find_plugin

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["create_blueprint"]

_FLASK, _QUART = "ui_flask", "ui_quart"


def _is_quart(web: Any) -> bool:
    return any(cls.__module__.split(".")[0] == "quart" for cls in type(web).__mro__)


def _factory(name: str) -> Any:
    try:
        return find_plugin(EXTENSIONS, name)
    except PluginNotFoundError:
        return None


def create_blueprint(app: Flowrra, *, web: Any = None, **options: Any) -> Any:
    """The UI's blueprint for ``app`` (see the module docs): ``flowrra_ui_flask``'s or
    ``flowrra_ui_quart``'s ``create_blueprint(app, **options)``."""
    if web is not None:
        name = _QUART if _is_quart(web) else _FLASK
        return find_plugin(EXTENSIONS, name)(app, **options)
    flask_factory, quart_factory = _factory(_FLASK), _factory(_QUART)
    if quart_factory is None and flask_factory is None:
        raise PluginNotFoundError(
            "no UI blueprint plugin is installed: `pip install flowrra-ui-flask` for Flask "
            "(WSGI), `pip install flowrra-ui-quart` for Quart, `pip install flowrra[ui-flask]` "
            "for both"
        )
    if quart_factory is None:
        return flask_factory(app, **options)
    blueprint = quart_factory(app, **options)
    if flask_factory is None:
        return blueprint
    quart_register = blueprint.register

    def register(target: Any, register_options: dict[str, Any]) -> Any:
        if _is_quart(target):
            return quart_register(target, register_options)
        # A Flask app: the Flask blueprint, under the same name and options.
        flask_blueprint = flask_factory(app, **options)
        return flask_blueprint.register(target, register_options)

    blueprint.register = register
    return blueprint
