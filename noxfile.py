"""Every session of the project. `nox` with no arguments runs lint, types, tests, docs and
examples (what CI runs); `nox -s demo` and `nox -s bench` run on demand.

Sessions use the interpreter that runs nox and never download one. Tests run against the
distributions installed into the session (not the source tree)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

nox.options.sessions = ["lint", "types", "tests", "docs", "examples"]
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
PACKAGES = [
    "flowrra-core",
    "flowrra-redis",
    "flowrra-scheduler",
    "flowrra-ui",
    "flowrra-ui-fastapi",
    "flowrra-ui-quart",
    "flowrra-ui-django",
]
TEST_PLUGIN = "packages/flowrra-core/tests/plugin_dist"


def _install_packages(session: nox.Session, *extra: str, editable: bool = False) -> None:
    targets = [f"./packages/{name}" for name in PACKAGES]
    if editable:
        targets = [arg for target in targets for arg in ("-e", target)]
    session.install(*targets, *extra)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the lock-step version check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    versions = {}
    for name in PACKAGES:
        module = name.replace("flowrra-core", "flowrra").replace("-", "_")
        text = (ROOT / "packages" / name / "src" / module / "_version.py").read_text()
        match = re.search(r'__version__ = "([^"]+)"', text)
        versions[name] = match.group(1) if match else None
    if len(set(versions.values())) != 1 or None in versions.values():
        session.error(f"distributions must share one version: {versions}")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on every distribution's sources (with what their test helpers
    import: pytest, and playwright for flowrra_ui.browser_contract)."""
    _install_packages(session, "mypy", "pytest", "playwright", "types-croniter", editable=True)
    session.run("mypy", "--strict", *[f"packages/{name}/src" for name in PACKAGES])


@nox.session
def tests(session: nox.Session) -> None:
    """Every package's tests, against the installed (non-editable) distributions."""
    if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
        session.run("bash", "tools/ensure-services.sh", external=True)
        session.run("bash", "tools/ensure-browser.sh", external=True)
    _install_packages(session, *(f"./packages/{name}[test]" for name in PACKAGES))
    session.install(f"./{TEST_PLUGIN}")
    # Reinstall from the working tree each run, even if the version did not change.
    session.install(
        "--no-deps", "--force-reinstall", *[f"./packages/{n}" for n in PACKAGES], f"./{TEST_PLUGIN}"
    )
    for name in PACKAGES:
        session.run("pytest", f"packages/{name}/tests", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation; warnings are errors."""
    session.install("mkdocs")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example in examples/."""
    _install_packages(session)
    for example in sorted((ROOT / "examples").glob("*.py")):
        session.run("python", str(example))


@nox.session
def demo(session: nox.Session) -> None:
    """The embedded demo."""
    _install_packages(session)
    session.run("flowrra", "demo")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not tests): in memory vs flowrra 0.1.8, then on Redis vs 0.1.8, arq,
    saq, taskiq and dramatiq (each in its own venv under bench/.venvs) and the machine's
    round-trip floor, then the scheduler's firing lateness on SQLite and PostgreSQL.
    ``-- --quick`` makes all short."""
    _install_packages(session, "asyncpg")
    session.run("python", "bench/run_core.py", *session.posargs)
    session.run("python", "bench/run_redis.py", *session.posargs)
    session.run("python", "bench/redis_floor.py", *session.posargs)
    session.run("python", "bench/run_scheduler.py", *session.posargs)
