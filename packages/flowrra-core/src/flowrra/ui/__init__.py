"""flowrra 0.1.8's import paths for the web UI (``flowrra.ui.fastapi``,
``flowrra.ui.flask``, ``flowrra.ui.django``), kept working: each
finds its adapter distribution through the ``flowrra.extensions`` entry points and, when it
is not installed, says which one to install."""
