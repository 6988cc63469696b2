"""An in-memory app, for the command-line tests that never run a task."""

from flowrra import Flowrra

app = Flowrra()


@app.task()
async def ok() -> None:
    return None
