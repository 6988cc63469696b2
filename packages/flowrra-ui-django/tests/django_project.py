"""The Flowrra app FLOWRRA_UI["APP"] names in the tests' settings."""

from flowrra import Flowrra

app = Flowrra()


@app.task()
async def ping() -> str:
    return "pong"
