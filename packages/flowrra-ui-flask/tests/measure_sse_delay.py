"""The live-update delay on WSGI, measured (not a test): gunicorn (gthread) serving
served/flask_ext_app.py, a ``flask flowrra worker``, Redis; this script submits with
``task.delay()`` and times each task's events on the UI's event stream (``/events``).

    python packages/flowrra-ui-flask/tests/measure_sse_delay.py [RUNS]

Prints the median (and min/max) from the submit call to the ``pending`` event, and from
the submit call to the ``success`` event, as the page receives them.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from queue import Queue

SERVED = Path(__file__).parent / "served"
REDIS_URL = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def main(runs: int) -> None:
    import redis

    prefix = f"flowrra-flask-sse-{uuid.uuid4().hex[:8]}"
    url = f"{REDIS_URL}?prefix={prefix}"
    env = {
        **os.environ,
        "FLASK_TEST_REDIS_URL": url,
        "FLASK_APP": "flask_ext_app",
        "PYTHONPATH": str(SERVED),
    }
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flask = str(Path(sys.executable).with_name("flask"))
    worker = subprocess.Popen([flask, "flowrra", "worker"], cwd=SERVED, env=env)
    web = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "flask_ext_app:web", "-b", f"127.0.0.1:{port}"),
            *("--worker-class", "gthread", "--threads", "8", "--graceful-timeout", "2"),
            *("--no-control-socket", "--log-level", "warning"),
        ],
        cwd=SERVED,
        env=env,
    )
    sys.path.insert(0, str(SERVED))
    os.environ["FLASK_TEST_REDIS_URL"] = url
    from flask_ext_app import greet  # the producer: this process

    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        events: Queue[tuple[float, dict[str, object]]] = Queue()
        stream = urllib.request.urlopen(f"http://127.0.0.1:{port}/flowrra/events", timeout=60)
        assert stream.readline() == b'data: {"type": "ready"}\n'

        def read() -> None:
            for line in stream:
                if line.startswith(b"data: "):
                    events.put((time.perf_counter(), json.loads(line[6:])))

        threading.Thread(target=read, daemon=True).start()
        greet.delay("warm-up")
        time.sleep(1)
        while not events.empty():
            events.get()
        pending, success = [], []
        for n in range(runs):
            start = time.perf_counter()
            task_id = greet.delay(f"run {n}")
            while True:
                at, event = events.get(timeout=20)
                if event["task_id"] != task_id:
                    continue
                if event["status"] == "pending":
                    pending.append((at - start) * 1000)
                if event["status"] == "success":
                    success.append((at - start) * 1000)
                    break
            time.sleep(0.2)
        for name, values in (("submit -> pending", pending), ("submit -> success", success)):
            print(
                f"{name}: median {statistics.median(values):.1f} ms "
                f"(min {min(values):.1f}, max {max(values):.1f}, {len(values)} runs)"
            )
    finally:
        for process in (web, worker):
            process.terminate()
            process.wait(20)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
