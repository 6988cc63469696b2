"""flowrra-redis's fast tests under the lowest and the highest redis-py its range allows.

flowrra-redis drives a few redis-py internals (all in ``flowrra_redis._redis_compat``), so
its range, ``redis[hiredis]>=8.0,<8.3``, is only as good as the releases it was tested
with. For each release this makes a throwaway virtualenv, installs that redis-py (with
hiredis) and the test tools from the lock, then flowrra-core and flowrra-redis from this
tree (editable, without dependencies), and runs the tests that exercise what it relies
on: the compat module, the codec, the error boundary, the contract suites (submit and
wait round trips included) and the pipeline's batching and reconnects.

    python packages/flowrra-redis/tests/redis_py_range.py            # lowest and highest
    python packages/flowrra-redis/tests/redis_py_range.py 8.1.0      # any releases

The lowest is the range's lower bound (``>=8.0``: 8.0.0); the highest is the lock's pin
(``constraints.txt``; ``nox -s lock`` keeps it at the newest release the range allows).
Needs a Redis server, as the tests do (``FLOWRRA_TEST_REDIS_URL``, by default the local
one), and the package index. Standard library only: it runs on any Python 3.11+.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "packages" / "flowrra-redis"
#: The tests run under each release (paths relative to the repository root).
TESTS = [
    f"packages/flowrra-redis/tests/{name}.py"
    for name in (
        "test_redis_compat",
        "test_codec",
        "test_errors",
        "test_contracts",
        "test_batching",
        "test_urls",
    )
]
TOOLS = ["pip", "hatchling", "editables", "pytest", "pytest-asyncio", "pytest-timeout"]


def requirement() -> str:
    """flowrra-redis's redis-py requirement, as its pyproject.toml states it."""
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        if re.match(r"redis\b", line):
            return str(line)
    raise SystemExit("flowrra-redis's pyproject.toml names no redis requirement")


def lowest(spec: str) -> str:
    """The range's lower bound as a release: ``>=8.0`` gives ``8.0.0``."""
    found = re.search(r">=\s*([\d.]+)", spec)
    if found is None:
        raise SystemExit(f"no lower bound in {spec!r}: name the releases to test")
    parts = found.group(1).split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


def pinned(constraints: Path) -> str:
    """The redis-py release the lock pins."""
    found = re.search(r"(?im)^redis==([\w.]+)\s*$", constraints.read_text())
    if found is None:
        raise SystemExit(f"{constraints} pins no redis release: name the releases to test")
    return found.group(1)


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], check=True, cwd=ROOT, env=env)


def check(release: str, constraints: Path, pytest_args: list[str]) -> None:
    """Install ``release`` into a throwaway virtualenv and run :data:`TESTS` there."""
    with tempfile.TemporaryDirectory(prefix=f"redis-py-{release}-") as folder:
        venv = Path(folder) / "venv"
        run(sys.executable, "-m", "venv", venv)
        python = venv / "bin" / "python"
        # The lock, less its redis-py pin (the release under test replaces it).
        lock = Path(folder) / "constraints.txt"
        lock.write_text(
            "".join(
                line
                for line in constraints.read_text().splitlines(keepends=True)
                if not re.match(r"(?i)redis==", line)
            )
        )
        pip = (python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
        run(*pip, "-c", lock, *TOOLS, f"redis[hiredis]=={release}")
        run(
            *pip,
            "--no-deps",
            "--no-build-isolation",
            "-e",
            ROOT / "packages" / "flowrra-core",
            "-e",
            PACKAGE,
        )
        run(
            python,
            "-c",
            f"import redis; assert redis.__version__ == {release!r}, redis.__version__",
        )
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        run(python, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider", *pytest_args, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("releases", nargs="*", help="redis-py releases (default: lowest, highest)")
    parser.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    parser.add_argument("--pytest-arg", action="append", default=[], dest="pytest_args")
    options = parser.parse_args()
    spec = requirement()
    releases = options.releases or [lowest(spec), pinned(options.constraints)]
    print(f"flowrra-redis requires {spec}; testing redis-py {', '.join(releases)}", flush=True)
    failed = []
    for release in releases:
        started = time.monotonic()
        try:
            check(release, options.constraints.resolve(), options.pytest_args)
        except subprocess.CalledProcessError:
            failed.append(release)
        print(f"redis-py {release}: {'FAILED' if release in failed else 'ok'} "
              f"({time.monotonic() - started:.0f}s)", flush=True)  # fmt: skip
    if failed:
        print(f"flowrra-redis fails with redis-py {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
