"""The Redis codec's cost per call: encode and decode a message and a record.

    python bench/redis_codec.py                      # µs per call, best of 7 x 100,000
    python bench/redis_codec.py --op NAME --count N  # run one case N times (for callgrind)

Instructions per call, which do not move with the machine's load (N calls minus none):

    ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python \\
      bench/redis_codec.py --op "$1" --count $2 2>&1 | grep -o 'Collected : [0-9]*' \\
      | grep -o '[0-9]*$'; }
    echo $(( ($(ir "decode message" 20000) - $(ir "decode message" 0)) / 20000 ))

It runs against whatever ``flowrra`` and ``flowrra_redis`` are importable, so
``PYTHONPATH`` pointing at another tree's ``src`` folders measures that tree.
"""

from __future__ import annotations

import argparse
import json
import time
import timeit
from collections.abc import Callable
from typing import Any

from flowrra_redis import codec
from flowrra_redis.broker import RedisBroker, _queued

from flowrra.task import TaskMessage, TaskResult, TaskStatus, new_task_id

NOW = time.time()


def _message(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskMessage:
    return TaskMessage(new_task_id(), name, args, kwargs, priority=0, submitted_at=NOW)


def _record(
    message: TaskMessage, status: TaskStatus, value: Any = None, done: bool = False
) -> TaskResult:
    """Built field by field: the same on every release, whatever its constructors take."""
    record = TaskResult.__new__(TaskResult)
    record.task_id, record.status, record.task_name = message.id, status, message.name
    record.result, record.error, record.traceback = value, None, None
    record.submitted_ts, record.retries, record.priority = NOW, 0, 0
    record.started_ts = NOW + 0.001 if done else None
    record.finished_ts = NOW + 0.002 if done else None
    record.args, record.kwargs = message.args, message.kwargs
    if "headers" in TaskResult.__slots__:  # format 2's fields (0.2.0 on)
        record.headers, record.progress = message.headers, None
    return record


def cases() -> dict[str, Callable[[], object]]:
    plain = _message("noop", (), {})
    with_args = _message("send_email", ("a@b.c", 3), {"subject": "hi"})
    pending = _record(plain, TaskStatus.PENDING)
    success = _record(plain, TaskStatus.SUCCESS, 42, done=True)
    members = [_queued(0, m).encode() for m in (plain, with_args)]
    texts = [codec.encode_result(r).encode() for r in (pending, success)]
    decode = RedisBroker._decode  # uses nothing of the broker
    return {
        "encode message": lambda: codec.encode_message(plain),
        "encode message with arguments": lambda: codec.encode_message(with_args),
        "decode message": lambda: decode(None, members[0]),  # type: ignore[arg-type]
        "decode message with arguments": lambda: decode(None, members[1]),  # type: ignore[arg-type]
        "encode PENDING record": lambda: codec.encode_result(pending),
        "encode SUCCESS record": lambda: codec.encode_result(success),
        "decode PENDING record": lambda: codec.decode_result(texts[0]),
        "decode SUCCESS record": lambda: codec.decode_result(texts[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--op", help="run only this case, --count times, and print nothing")
    parser.add_argument("--count", type=int, default=100_000)
    options = parser.parse_args()
    table = cases()
    if options.op is not None:
        call = table[options.op]
        for _ in range(options.count):
            call()
        return
    per_call = {
        name: min(timeit.repeat(call, number=options.count, repeat=7)) / options.count * 1e6
        for name, call in table.items()
    }
    print(json.dumps({name: round(us, 3) for name, us in per_call.items()}))


if __name__ == "__main__":
    main()
