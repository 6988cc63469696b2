"""What this instrumentation instruments (``BaseInstrumentor.instrumentation_dependencies``)."""

_instruments = ("flowrra >= 0.2.0",)
