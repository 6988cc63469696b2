"""A producer and reader of ``redis_app``'s tasks in a process of its own, for
test_rolling_upgrade: run with another release's flowrra on ``PYTHONPATH``, it submits and
reads as that release does. Prints JSON.

- ``submit LABEL N...``: ``record(n)`` for each n, then ``fails_once(LABEL)``; their ids.
- ``wait ID...``: each task's record once complete (``wait_for_result``), as ``to_dict()``.
- ``get ID...``: each task's record now (``get_result``), as ``to_dict()`` or null.
"""

from __future__ import annotations

import asyncio
import json
import sys

from redis_app import app, fails_once, record


async def main(command: str, values: list[str]) -> object:
    async with app.producer():
        if command == "submit":
            ids = [await app.submit(record, int(n)) for n in values[1:]]
            return [*ids, await app.submit(fails_once, values[0])]
        if command == "wait":
            return [(await app.wait_for_result(i, timeout=30)).to_dict() for i in values]
        found = [await app.get_result(i) for i in values]
        return [None if r is None else r.to_dict() for r in found]


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2:]))))
