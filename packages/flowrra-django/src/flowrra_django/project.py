"""``flowrra_django.project:app``: the project's app (:func:`flowrra_django.get_app`) under
a ``module:attribute`` name, which is how ``manage.py flowrra`` hands it to the ``flowrra``
command's sub-commands (they take the app as ``module:attribute``)."""

from __future__ import annotations

from flowrra import Flowrra

#: The ``module:attribute`` of the project's app.
SPEC = "flowrra_django.project:app"


def __getattr__(name: str) -> Flowrra:
    if name == "app":
        from flowrra_django.conf import get_app

        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
