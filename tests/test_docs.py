"""Every code block of the documentation runs (``nox -s docs``).

One test per Python block of every page under ``docs/``, run in order in one process per
page as ``tools/docs_snippets.py`` describes (a block marked ``<!-- test: skip REASON -->``
is reported as skipped, with its reason); one per YAML, TOML, systemd, shell and Dockerfile
block (parsed and checked); one per file under ``docs/deploy/``. Blocks that use Redis run
against ``FLOWRRA_TEST_REDIS_URL`` (default: the local server); where it cannot be reached
they are skipped, or fail under ``FLOWRRA_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import docs_snippets as snippets

REDIS_URL = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE_SERVICES = os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1"
PAGES = {page: snippets.parse(page) for page in snippets.pages()}
PYTHON_BLOCKS = [b for blocks in PAGES.values() for b in blocks if b.language in snippets.PYTHON]
CHECKED_BLOCKS = [b for blocks in PAGES.values() for b in blocks if b.language in snippets.CHECKS]
DEPLOY_FILES = sorted(p for p in (snippets.DOCS / "deploy").rglob("*") if p.is_file())
_runs: dict[str, dict[str, dict[str, Any]]] = {}


def _redis_reachable() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except Exception as exc:
        return f"Redis at {REDIS_URL} cannot be reached: {exc}"
    return None


def _delete_keys(prefix: str, code: str) -> None:
    import redis

    for db in sorted({int(m["db"]) for m in snippets.REDIS_URL.finditer(code)}):
        client = redis.Redis.from_url(f"{REDIS_URL.rstrip('/')}/{db}")
        keys = list(client.scan_iter(match=f"{{{prefix}}}*", count=1000))
        if keys:
            client.delete(*keys)


def _run_page(page: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run every Python block of ``page`` once; each block's outcome by its id."""
    if page in _runs:
        return _runs[page]
    path = snippets.ROOT / page
    blocks = [b for b in PAGES[path] if b.language in snippets.PYTHON]
    prefix = f"docs-{uuid.uuid4().hex[:8]}"
    spec = []
    for block in blocks:
        if block.directive("skip"):
            continue
        setup = block.directive("setup")
        worker = block.directive("worker")
        stop_after = block.directive("stop-after")
        code = snippets.with_test_redis(block.code, REDIS_URL, prefix)
        files = [
            (argument, snippets.with_test_redis(body, REDIS_URL, prefix))
            for name, argument, body in block.directives
            if name == "file"
        ]
        spec.append(
            {
                "id": block.id,
                "code": code,
                "setup": snippets.with_test_redis(setup[1].rstrip() + "\n", REDIS_URL, prefix)
                if setup
                else "",
                "files": files,
                "worker": worker[0] if worker else None,
                "stop_after": float(stop_after[0]) if stop_after else None,
            }
        )
    folder = tmp_path_factory.mktemp(Path(page).stem)
    (folder / "spec.json").write_text(json.dumps({"blocks": spec}))
    results_file = folder / "results.jsonl"
    budget = sum(b["stop_after"] or snippets.BLOCK_TIMEOUT for b in spec) + 60
    page_dir = folder / "page"
    page_dir.mkdir()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(
            [sys.executable, str(snippets.ROOT / "tools/docs_snippets.py"),
             str(folder / "spec.json"), str(results_file)],
            cwd=page_dir, env=env, capture_output=True, text=True, timeout=budget,
        )  # fmt: skip
        output = done.stdout[-4000:] + done.stderr[-4000:]
    except subprocess.TimeoutExpired as exc:
        output = f"the page's process was stopped after {budget:g} s\n{exc.stdout!r}"
    finally:
        if snippets.uses_redis(blocks):
            _delete_keys(prefix, "".join(b.code for b in blocks))
    outcomes: dict[str, dict[str, Any]] = {}
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            record = json.loads(line)
            outcomes[record["id"]] = record
    for block in spec:
        outcome = outcomes.setdefault(block["id"], {"state": "not run"})
        outcome["output"] = output
    _runs[page] = outcomes
    return outcomes


@pytest.mark.timeout(900)
@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.id for b in PYTHON_BLOCKS])
def test_python_block(block: snippets.Block, tmp_path_factory: pytest.TempPathFactory) -> None:
    skip = block.directive("skip")
    if skip:
        pytest.skip(f"marked not to run: {skip[0]} {skip[1]}".strip())
    if snippets.uses_redis(PAGES[snippets.ROOT / block.page]):
        reason = _redis_reachable()
        if reason and REQUIRE_SERVICES:
            pytest.fail(f"{reason} (FLOWRRA_REQUIRE_SERVICES=1)")
        if reason:
            pytest.skip(reason)
    outcome = _run_page(block.page, tmp_path_factory)[block.id]
    if outcome["state"] == "started":
        pytest.fail(f"{block.id} did not finish\n{outcome['output']}")
    if outcome["state"] != "passed":
        pytest.fail(
            f"{block.id}: {outcome['state']}\n{outcome.get('error', '')}\n"
            f"--- the page's output ---\n{outcome['output']}",
            pytrace=False,
        )


@pytest.mark.parametrize(
    "block", CHECKED_BLOCKS, ids=[f"{b.id}[{b.language}]" for b in CHECKED_BLOCKS]
)
def test_other_block(block: snippets.Block) -> None:
    if block.directive("skip"):
        pytest.skip(block.directive("skip")[0])  # type: ignore[index]
    snippets.CHECKS[block.language](block.code)


@pytest.mark.parametrize(
    "path", DEPLOY_FILES, ids=[p.relative_to(snippets.DOCS).as_posix() for p in DEPLOY_FILES]
)
def test_deploy_file(path: Path) -> None:
    snippets.check_file(path)
