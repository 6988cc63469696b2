"""Flask on WSGI: plain `def` views submit with `task.delay()`, `flask flowrra worker` runs
the tasks, the monitoring UI is a blueprint with live updates over Server-Sent Events.

    pip install "flowrra[flask,redis]" gunicorn
    python examples/flask_app.py          # needs Redis on localhost:6379

Run as a script, it starts `flask --app flask_app flowrra worker` and gunicorn (threads)
serving this module, submits through the view, reads the result through another, opens
the UI's event stream, then stops both with SIGTERM. Serve it yourself with
`gunicorn flask_app:web --worker-class gthread --threads 8` and open
http://127.0.0.1:8000/flowrra/ (user "ada", password "lovelace").
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from flask import Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from flowrra_ui_flask import FlowrraFlask, create_blueprint

URL = os.environ.get("FLOWRRA_EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/8")
# A prefix of its own per run, passed on to the worker and gunicorn.
PREFIX = os.environ.setdefault("FLOWRRA_EXAMPLE_PREFIX", f"example-{uuid.uuid4().hex[:8]}")

web = Flask(__name__)
web.config["FLOWRRA_BROKER_URL"] = f"{URL}?prefix={PREFIX}"
web.config["FLOWRRA_BACKEND_URL"] = f"{URL}?prefix={PREFIX}"
web.config["SHOP_NAME"] = "Example shop"
flowrra = FlowrraFlask(web)  # web.extensions["flowrra"]; adds `flask flowrra ...`


@flowrra.app.task(max_retries=3)
async def send_receipt(to: str, total: float) -> dict[str, str]:
    # Each attempt runs in an app context of its own: current_app, g, app.config.
    shop = current_app.config["SHOP_NAME"]
    return {"to": to, "subject": f"{shop}: your receipt ({total:.2f})"}


@web.post("/orders")
def place_order() -> ResponseReturnValue:
    order = request.get_json()
    task_id = send_receipt.delay(order["email"], order["total"])  # queued; returns the id
    return jsonify(task_id=task_id), 202


@web.get("/orders/receipt/<task_id>")
def receipt(task_id: str) -> ResponseReturnValue:
    result = flowrra.app.get_result_sync(task_id)  # never waits
    if result is None:
        return jsonify(status="unknown"), 404
    return jsonify(status=result.status.value, receipt=result.result)


def staff_only() -> bool | Response:
    auth = request.authorization
    if auth and secrets.compare_digest(f"{auth.username}:{auth.password}", "ada:lovelace"):
        return True
    return Response("sign in", 401, {"WWW-Authenticate": 'Basic realm="Flowrra"'})


web.register_blueprint(create_blueprint(flowrra.app, auth=staff_only), url_prefix="/flowrra")


def _get(url: str, **headers: str) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        body: bytes = r.read()
        return body


def _no_control_socket() -> list[str]:
    """gunicorn 24+ opens a control socket at ~/.gunicorn/gunicorn.ctl, one path for every
    server of the user: servers running side by side must not share it."""
    from gunicorn import config  # type: ignore[import-untyped,unused-ignore]

    names = {setting.name for setting in config.KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


def main() -> int:
    try:
        socket.create_connection(("127.0.0.1", 6379), 2).close()
    except OSError as exc:
        print(f"Redis is not reachable at {URL}: {exc}")
        return 1 if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1" else 0
    here = Path(__file__).parent
    bin_dir = Path(sys.executable).parent
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(here), "FLASK_APP": "flask_app"}
    worker = subprocess.Popen([bin_dir / "flask", "flowrra", "worker"], cwd=here, env=env)
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "flask_app:web", "-b", f"127.0.0.1:{port}"),
            *("--worker-class", "gthread", "--threads", "8", "--graceful-timeout", "2"),
            *_no_control_socket(),
        ],
        cwd=here,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        order = json.dumps({"email": "ada@example.com", "total": 42.5}).encode()
        request_ = urllib.request.Request(
            f"{base}/orders", order, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request_, timeout=30) as answer:
            task_id = json.loads(answer.read())["task_id"]
        print("submitted", task_id)
        for _ in range(200):
            body = json.loads(_get(f"{base}/orders/receipt/{task_id}"))
            if body["status"] == "success":
                break
            time.sleep(0.1)
        print("receipt:", body["receipt"])
        stats = json.loads(
            _get(f"{base}/flowrra/api/stats", Authorization="Basic YWRhOmxvdmVsYWNl")
        )
        print("the UI counts", stats["totals"]["success"], "success")
        return 0 if body["status"] == "success" else 1
    finally:
        for process in (server, worker):
            process.terminate()
            process.wait(20)


if __name__ == "__main__":
    sys.exit(main())
