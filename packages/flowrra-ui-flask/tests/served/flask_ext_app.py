"""The Flask app of test_gunicorn.py: the extension configured from ``app.config`` (the
Redis URL the test gives in ``FLASK_TEST_REDIS_URL``), plain ``def`` views submitting
with ``task.delay``, and tasks that read the Flask app context. gunicorn serves
``flask_ext_app:web``; ``flask --app flask_ext_app flowrra worker`` runs the tasks."""

from __future__ import annotations

import os
import threading

from flask import Flask, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from flowrra_ui_flask import FlowrraFlask, create_blueprint

web = Flask(__name__)
web.config["GREETING"] = "hello from the app context"
web.config["FLOWRRA_BROKER_URL"] = os.environ["FLASK_TEST_REDIS_URL"]
web.config["FLOWRRA_BACKEND_URL"] = os.environ["FLASK_TEST_REDIS_URL"]
web.config["FLOWRRA_EXECUTOR_NUM_WORKERS"] = 4
ext = FlowrraFlask(web)
flowrra = ext.app


@flowrra.task()
async def greet(name: str) -> dict[str, str]:
    g.who = name  # an app context of its own per attempt
    return {"greeting": f"{current_app.config['GREETING']}, {g.who}", "app": current_app.name}


@flowrra.task()
def greet_in_thread(name: str) -> dict[str, str | bool]:
    return {
        "greeting": f"{current_app.config['GREETING']}, {name}",
        "in_thread": threading.current_thread() is not threading.main_thread(),
        "g_is_fresh": "who" not in g,
    }


@web.post("/greet/<kind>")
def submit(kind: str) -> ResponseReturnValue:
    task = greet if kind == "async" else greet_in_thread
    return jsonify(task_id=task.delay(request.get_json()["name"])), 202


@web.get("/result/<task_id>")
def result(task_id: str) -> ResponseReturnValue:
    record = flowrra.wait_for_result_sync(task_id, timeout=20)
    return jsonify(status=record.status.value, result=record.result)


@web.get("/extension")
def extension() -> ResponseReturnValue:
    return jsonify(same=current_app.extensions["flowrra"] is ext)


web.register_blueprint(create_blueprint(flowrra, public=True), url_prefix="/flowrra")
