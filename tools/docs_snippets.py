"""The code blocks of the documentation, found and run: ``tests/test_docs.py`` uses this.

Every fenced block of every page under ``docs/`` is collected. The Python blocks of a page
run in order, in one fresh process per page (``python tools/docs_snippets.py``), in an
empty folder of their own, as a reader would paste them into one session:

- The blocks share one namespace, whose ``__name__`` is ``"__main__"`` (so an
  ``if __name__ == "__main__":`` guard runs, and a CPU task defined there is found by the
  process pool). Top-level ``await`` and ``async with`` work: such a block runs on one
  event loop kept for the page. A block may call ``asyncio.run()`` itself.
- A block whose first line is a file name comment (``# tasks.py``, ``# tasks.py: what it
  is``, ``# my_pkg/__init__.py``) is that file: it is written into the folder and imported
  (its public names join the namespace), so a later block's ``from tasks import app``
  finds it. One block may hold several files, each starting at its own file name comment.
  Once ``DJANGO_SETTINGS_MODULE`` is set, Django is set up before the next file is
  imported.
- ``redis://localhost:6379/N`` in a block is the test server (``FLOWRRA_TEST_REDIS_URL``)
  with a key prefix of the page run's own, whose keys are deleted afterwards.

An HTML comment right before a block (only blank lines between) tells the runner more;
readers of the site do not see it:

- ``<!-- test: skip REASON -->``: the block does not run (the reason is reported).
- ``<!-- test: setup`` + lines + ``-->``: code run first, in the block's place (prepended
  to the first file of a file block): what the page leaves to the reader, such as a
  secret's value.
- ``<!-- test: file PATH`` + lines + ``-->``: a file written before the block.
- ``<!-- test: worker MODULE:APP -->``: a ``flowrra worker`` process on that app starts
  before the block, and is stopped (SIGTERM) when the page is done.
- ``<!-- test: stop-after SECONDS -->``: the block serves until stopped; it passes when it
  is still running without error after that many seconds (then it is interrupted).

Other blocks are checked for what they are: ``yaml`` parses (and a Kubernetes Deployment
gives its pods a ``terminationGracePeriodSeconds`` above the worker's ``--grace``),
``toml`` parses, ``ini`` parses as a systemd unit (``TimeoutStopSec`` above ``--grace``),
``bash``/``sh`` pass ``bash -n``, ``dockerfile`` uses known instructions. A block that is
only a ``--8<-- "path"`` line (pymdownx.snippets) is that file.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import contextlib
import importlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
DIRECTIVE = re.compile(r"<!--\s*test:\s*(?P<body>.*?)-->", re.DOTALL)
FILE_HEADER = re.compile(r"^#\s*(?P<path>[\w./-]+\.py)\b(?::.*)?$")
SNIPPET_INCLUDE = re.compile(r'^-{1,3}8<-{1,3}\s+"(?P<path>[^"]+)"\s*$')
PYTHON = {"python", "py", "python3"}
REDIS_URL = re.compile(
    r"redis://(?:localhost|127\.0\.0\.1):6379/(?P<db>\d+)(?P<query>\?[^\s\"']*)?"
)
BLOCK_TIMEOUT = 60.0


@dataclass
class Block:
    """One fenced block of a page, with the directives written right before it."""

    page: str
    line: int
    language: str
    code: str
    directives: list[tuple[str, str, str]] = field(default_factory=list)
    included: str | None = None  # the file a --8<-- line shows, relative to the root

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def directive(self, name: str) -> tuple[str, str] | None:
        for found, argument, body in self.directives:
            if found == name:
                return argument, body
        return None


def _directive(text: str) -> tuple[str, str, str]:
    head, _, body = text.strip().partition("\n")
    name, _, argument = head.strip().partition(" ")
    return name.strip(), argument.strip(), body


def parse(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order."""
    page = path.relative_to(ROOT).as_posix()
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        info = match["info"].strip().lstrip("{").lstrip(".")
        language = re.split(r"[\s{}]", info, maxsplit=1)[0].lower() if info else ""
        end = i + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and lines[end].strip().strip(fence[0]) == ""
        ):
            end += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        ]
        code = "\n".join(body) + "\n"
        # The HTML comments right before the fence (blank lines between them allowed).
        before = "\n".join(lines[:i])
        directives = []
        tail = before.rstrip()
        while tail.endswith("-->"):
            start = tail.rfind("<!--")
            comment = DIRECTIVE.fullmatch(tail[start:].strip()) if start >= 0 else None
            if comment is None:
                break
            directives.insert(0, _directive(comment["body"]))
            tail = tail[:start].rstrip()
        block = Block(page, i + 1, language, code, directives)
        include = SNIPPET_INCLUDE.match(code.strip())
        if include:
            block.included = include["path"]
            block.code = (ROOT / include["path"]).read_text()
        blocks.append(block)
        i = end + 1
    return blocks


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def uses_redis(blocks: list[Block]) -> bool:
    """Whether a Python block of the page (or what its directives add) names Redis."""
    return any(
        REDIS_URL.search(b.code + "".join(body for _, _, body in b.directives))
        for b in blocks
        if b.language in PYTHON and not b.directive("skip")
    )


def with_test_redis(code: str, base: str, prefix: str) -> str:
    """``code`` with the docs' local Redis URLs pointing at the test server, under
    ``prefix``."""

    def replace(match: re.Match[str]) -> str:
        query = match["query"] or ""
        joiner = "&" if query else "?"
        return f"{base.rstrip('/')}/{match['db']}{query}{joiner}prefix={prefix}"

    return REDIS_URL.sub(replace, code)


def split_files(code: str) -> list[tuple[str, str]] | None:
    """A file block's files, as (path, text); ``None`` when the block is not one."""
    lines = code.splitlines(keepends=True)
    if not lines or not FILE_HEADER.match(lines[0].strip()):
        return None
    files: list[tuple[str, list[str]]] = []
    for line in lines:
        header = FILE_HEADER.match(line.strip())
        if header and (not files or line.startswith("#")):
            files.append((header["path"], [line]))
        else:
            files[-1][1].append(line)
    return [(path, "".join(text)) for path, text in files]


# -- checks of the blocks that are not Python -------------------------------------------------


def grace_of(command: list[str] | str) -> float | None:
    """The ``--grace`` given to ``flowrra worker`` in a command line, if any."""
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    for i, word in enumerate(words):
        if word == "--grace" and i + 1 < len(words):
            return float(words[i + 1])
        if word.startswith("--grace="):
            return float(word.split("=", 1)[1])
    if "worker" in words:
        return 30.0  # the default of flowrra worker --grace
    return None


def check_yaml(text: str) -> None:
    import yaml

    for document in yaml.safe_load_all(text):
        if not isinstance(document, dict) or document.get("kind") not in {
            "Deployment",
            "StatefulSet",
        }:
            continue
        for key in ("apiVersion", "metadata", "spec"):
            assert key in document, f"a {document['kind']} without {key}"
        pod = document["spec"]["template"]["spec"]
        for container in pod["containers"]:
            command = [*container.get("command", []), *container.get("args", [])]
            if "flowrra" not in " ".join(map(str, command)) or "worker" not in command:
                continue
            grace = grace_of(command)
            assert grace is not None
            period = pod.get("terminationGracePeriodSeconds", 30)
            assert period > grace + 5, (
                f"{document['metadata'].get('name')}: terminationGracePeriodSeconds {period} "
                f"must exceed the worker's --grace {grace:g} + 5 (flowrra's own backstop), or "
                "Kubernetes kills it mid-drain"
            )


def check_unit(text: str) -> None:
    """A systemd unit: INI sections, a [Service] with ExecStart; a worker's stop timeout
    above its ``--grace``."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    assert parser.has_section("Unit") and parser.has_section("Service"), parser.sections()
    service = parser["Service"]
    assert "ExecStart" in service, "no ExecStart in [Service]"
    start = service["ExecStart"]
    assert start.startswith("/"), f"ExecStart needs an absolute path: {start}"
    if " worker " in f" {start} ":
        grace = grace_of(start)
        assert grace is not None
        stop = float(service.get("TimeoutStopSec", "90").rstrip("s"))
        assert stop > grace + 5, f"TimeoutStopSec {stop:g} must exceed --grace {grace:g} + 5"


DOCKER_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def check_dockerfile(text: str) -> None:
    continued = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not continued:
            word = stripped.split()[0].upper()
            assert word in DOCKER_INSTRUCTIONS, f"line {number}: unknown instruction {word}"
        continued = stripped.endswith("\\")
    assert text.lstrip().upper().startswith(("FROM", "ARG", "#")), "a Dockerfile starts FROM"


def check_shell(text: str) -> None:
    done = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert done.returncode == 0, done.stderr


def check_redis_conf(text: str) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            assert re.fullmatch(r"[a-z][a-z0-9-]* +\S.*", stripped), f"line {number}: {line}"


def check_requirements(text: str) -> None:
    """Each line a requirement; a pin of flowrra names the release this tree builds."""
    from packaging.requirements import Requirement

    version = re.search(
        r'__version__ = "([^"]+)"',
        (ROOT / "packages/flowrra-core/src/flowrra/_version.py").read_text(),
    )
    assert version
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            if requirement.name == "flowrra" and str(requirement.specifier).startswith("=="):
                assert str(requirement.specifier) == f"=={version.group(1)}", line


CHECKS = {
    "yaml": check_yaml,
    "yml": check_yaml,
    "toml": tomllib.loads,
    "ini": check_unit,
    "systemd": check_unit,
    "bash": check_shell,
    "sh": check_shell,
    "shell": check_shell,
    "dockerfile": check_dockerfile,
}


def check_file(path: Path) -> None:
    """Check a file shown by the docs (``docs/deploy/``) by its kind."""
    name = path.name.lower()
    if name.endswith((".yaml", ".yml")):
        check_yaml(path.read_text())
    elif name.endswith((".service", ".timer")):
        check_unit(path.read_text())
    elif name == "dockerfile" or name.endswith(".dockerfile"):
        check_dockerfile(path.read_text())
    elif name.endswith(".conf"):
        check_redis_conf(path.read_text())
    elif name.endswith(".sh"):
        check_shell(path.read_text())
    elif name.endswith(".toml"):
        tomllib.loads(path.read_text())
    elif name == "requirements.txt":
        check_requirements(path.read_text())
    else:
        raise AssertionError(f"no check for {path.name}")


# -- the page runner: runs in a process of its own ----------------------------------------


class Interrupted(Exception):
    """The block's time is up."""


def _alarm(signum: int, frame: Any) -> None:
    raise Interrupted


def _module_name(path: str) -> str:
    parts = Path(path).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _setup_django_if_configured(module: str) -> None:
    settings = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not settings or module == settings:
        return
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()


def _import_file(path: str, text: str, namespace: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    module = _module_name(path)
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        del sys.modules[name]  # a page may write the same file twice
    importlib.invalidate_caches()
    _setup_django_if_configured(module)
    imported = importlib.import_module(module)
    namespace.update({k: v for k, v in vars(imported).items() if not k.startswith("_")})


def _run_python(block: dict[str, Any], namespace: dict[str, Any], loop: asyncio.Runner) -> None:
    code, setup = block["code"], block.get("setup") or ""
    for path, text in block.get("files") or []:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    files = split_files(code)
    if files is not None:
        first_path, first_text = files[0]
        files[0] = (first_path, setup + first_text)
        for path, text in files:
            _import_file(path, text, namespace)
        return
    source = setup + code
    compiled = compile(source, block["id"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # the docs' own code
    if asyncio.iscoroutine(result):
        loop.run(result)


def _cancel_leftovers(loop: asyncio.Runner) -> None:
    """After an interrupted ``await`` block: cancel what it left on the page's loop."""
    running = loop.get_loop()
    pending = [t for t in asyncio.all_tasks(running) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        with contextlib.suppress(BaseException):
            running.run_until_complete(asyncio.wait(pending, timeout=10))


def _run_block(
    block: dict[str, Any], namespace: dict[str, Any], loop: asyncio.Runner
) -> dict[str, Any]:
    """Run one block within its time; its outcome."""
    stop_after = block.get("stop_after")
    signal.setitimer(signal.ITIMER_REAL, stop_after or BLOCK_TIMEOUT)
    started = time.monotonic()
    try:
        _run_python(block, namespace, loop)
    except Interrupted:
        _cancel_leftovers(loop)
        if stop_after:
            return {"state": "passed", "seconds": time.monotonic() - started}
        return {"state": "failed", "error": f"still running after {BLOCK_TIMEOUT:g} s"}
    except BaseException:
        return {"state": "failed", "error": traceback.format_exc()}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if stop_after:
        return {"state": "failed", "error": f"it ended before {stop_after:g} s: should it serve?"}
    return {"state": "passed", "seconds": time.monotonic() - started}


def run_page(spec_path: str, results_path: str) -> int:
    """Run one page's Python blocks (the spec the test wrote), one JSON line per block."""
    spec = json.loads(Path(spec_path).read_text())
    sys.path.insert(0, os.getcwd())
    main = type(sys)("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main  # so the process pool finds the page's CPU tasks
    workers: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGALRM, _alarm)
    with open(results_path, "a") as results, asyncio.Runner() as loop:
        try:
            for block in spec["blocks"]:
                results.write(json.dumps({"id": block["id"], "state": "started"}) + "\n")
                results.flush()
                if block.get("worker"):
                    command = [sys.executable, "-m", "flowrra", "worker", block["worker"]]
                    workers.append(subprocess.Popen(command, cwd=os.getcwd()))
                outcome = _run_block(block, main.__dict__, loop)
                results.write(json.dumps({"id": block["id"], **outcome}) + "\n")
                results.flush()
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
    return 0


if __name__ == "__main__":
    sys.exit(run_page(sys.argv[1], sys.argv[2]))
