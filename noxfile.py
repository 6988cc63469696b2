"""Every session of the project. `nox` with no arguments runs lint, types, tests (on every
supported Python), upgrade, docs and examples: what CI runs. `nox -s demo`, `bench`,
`latest` and `lock` run on demand.

Every tool and every third-party dependency a session installs comes from one lock,
`constraints.txt` (pip itself and the build backend included: local distributions are
built without isolation, with the locked hatchling). `nox -s lock` refreshes it on purpose;
`nox -s latest` runs the tests against the newest releases the ranges allow, to show
tomorrow's breakage before users meet it.

Sessions find their interpreters on this machine and never download one; under `CI=true`
a missing interpreter is an error. Tests run against the distributions installed into the
session (not the source tree)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import tomllib
from pathlib import Path

import nox

nox.options.sessions = ["lint", "types", "tests", "redis_range", "upgrade", "docs", "examples"]
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
CONSTRAINTS = ROOT / "constraints.txt"
PACKAGES = [
    "flowrra-core",
    "flowrra-redis",
    "flowrra-scheduler",
    "flowrra-ui",
    "flowrra-ui-fastapi",
    "flowrra-ui-quart",
    "flowrra-ui-flask",
    "flowrra-ui-django",
    "flowrra-django",
    "flowrra-opentelemetry",
    "flowrra-prometheus",
]
#: The Pythons Flowrra claims (classifiers) and tests; the browser suites run on the first.
PYTHONS = ["3.11", "3.12", "3.13"]
BROWSER_SUITES = [f"packages/{name}/tests/test_browser.py" for name in PACKAGES]
TEST_PLUGIN = "packages/flowrra-core/tests/plugin_dist"


def _name_pyenv_versions() -> None:
    """pyenv's ``python3.12`` shim answers only for the versions that ``PYENV_VERSION``
    (or ``pyenv global``) names. Name the newest installed 3.11, 3.12 and 3.13 after the
    current one, so nox finds them where pyenv keeps them."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if "PYENV_VERSION" in os.environ or not versions.is_dir():
        return
    names = [platform.python_version()]
    for minor in PYTHONS:
        found = sorted(
            (p.name for p in versions.glob(f"{minor}.*") if re.fullmatch(r"[\d.]+", p.name)),
            key=lambda v: tuple(map(int, v.split("."))),
        )
        if found and found[-1] not in names:
            names.append(found[-1])
    os.environ["PYENV_VERSION"] = ":".join(names)


_name_pyenv_versions()


def _install(session: nox.Session, *args: str, locked: bool = True) -> None:
    """``pip install`` from the lock: pip itself and hatchling (with editables, for
    editable installs) first, then ``args`` built without isolation (so the build
    backend is the locked one too)."""
    lock = ("-c", str(CONSTRAINTS)) if locked else ("--upgrade",)
    session.install(*lock, "pip", "hatchling", "editables")
    session.install(*lock, "--no-build-isolation", *args)


def _packages(*, extra: str = "", editable: bool = False) -> list[str]:
    targets = [f"./packages/{name}{extra}" for name in PACKAGES]
    if editable:
        targets = [arg for target in targets for arg in ("-e", target)]
    return targets


def _versions() -> dict[str, str]:
    """Each distribution's name and version, read from its sources."""
    found = {}
    for name in PACKAGES:
        folder = ROOT / "packages" / name
        pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
        version_file = pyproject["tool"]["hatch"]["version"]["path"]
        match = re.search(r'__version__ = "([^"]+)"', (folder / version_file).read_text())
        found[pyproject["project"]["name"]] = match.group(1) if match else "?"
    return found


def _check_lock_step(session: nox.Session) -> None:
    """One version for every distribution, and every dependency of one on another (extras
    included) pinned to exactly that version: plugins use the core's internals."""
    versions = _versions()
    if len(set(versions.values())) != 1:
        session.error(f"distributions must share one version: {versions}")
    (version,) = set(versions.values())
    for name in PACKAGES:
        project = tomllib.loads((ROOT / "packages" / name / "pyproject.toml").read_text())[
            "project"
        ]
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
        for requirement in requirements:
            sibling = re.match(r"(flowrra(?:-[a-z-]+)?)(\[[^\]]*\])?(.*)", requirement)
            if sibling and sibling.group(1) in versions and sibling.group(3) != f"=={version}":
                session.error(f"{name} must pin {requirement!r} to =={version} (lock step)")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, the lock-step check, and every distribution built and checked as PyPI will
    show it: ``twine check --strict``, a LICENSE, project URLs, the Pythons we test, and
    READMEs whose links work off this repository (tests/test_distributions.py)."""
    _install(session, "ruff", "build", "twine", "pytest", "pytest-timeout", "pytest-asyncio")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    _check_lock_step(session)
    dist = _build(session)
    session.run("twine", "check", "--strict", *sorted(str(p) for p in dist.iterdir()))
    session.run(
        "pytest",
        "tests/test_distributions.py",
        "-p",
        "no:cacheprovider",
        env={"FLOWRRA_DIST_DIR": str(dist), "FLOWRRA_PYTHONS": " ".join(PYTHONS)},
    )


def _build(session: nox.Session) -> Path:
    """Wheels and sdists of every distribution, in a fresh folder under the session's."""
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for name in PACKAGES:
        session.run(
            "python",
            "-m",
            "build",
            "--no-isolation",
            "--outdir",
            str(dist),
            f"packages/{name}",
            silent=True,
        )
    return dist


@nox.session
def upgrade(session: nox.Session) -> None:
    """A virtualenv with flowrra 0.1.8 from the registry, upgraded as the README says,
    ends with a working new Flowrra and no file of the old one (tests/test_upgrade.py)."""
    _install(session, "build", "pytest", "pytest-timeout", "pytest-asyncio")
    dist = _build(session)
    session.run(
        "pytest",
        "tests/test_upgrade.py",
        "-p",
        "no:cacheprovider",
        env={"FLOWRRA_DIST_DIR": str(dist), "FLOWRRA_CONSTRAINTS": str(CONSTRAINTS)},
    )


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on every distribution's sources (with what their test helpers
    import: pytest and pytest-asyncio for flowrra.pytest_plugin, playwright for
    flowrra_ui.browser_contract, watchfiles for flowrra.supervisor's --reload)."""
    _install(
        session,
        "mypy",
        "pytest",
        "pytest-asyncio",
        "playwright",
        "types-croniter",
        "watchfiles",
        *_packages(editable=True),
    )
    session.run("mypy", "--strict", *[f"packages/{name}/src" for name in PACKAGES])


def _run_tests(session: nox.Session, *, browsers: bool) -> None:
    if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
        session.run("bash", "tools/ensure-services.sh", external=True)
        if browsers:
            session.run("bash", "tools/ensure-browser.sh", external=True)
    skip = [] if browsers else [f"--ignore={suite}" for suite in BROWSER_SUITES]
    for name in PACKAGES:
        session.run(
            "pytest", f"packages/{name}/tests", "-p", "no:cacheprovider", *skip, *session.posargs
        )


def _reinstall_from_tree(session: nox.Session) -> None:
    """Reinstall from the working tree each run, even if the version did not change."""
    session.install(
        "--no-deps",
        "--no-build-isolation",
        "--force-reinstall",
        *_packages(),
        f"./{TEST_PLUGIN}",
    )


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Every package's tests, against the installed (non-editable) distributions and the
    locked dependencies. The browser suites run on the first Python only."""
    _install(session, *_packages(extra="[test]"), f"./{TEST_PLUGIN}")
    _reinstall_from_tree(session)
    _run_tests(session, browsers=session.python == PYTHONS[0])


@nox.session
def redis_range(session: nox.Session) -> None:
    """flowrra-redis's fast tests under the lowest and the highest redis-py its range
    allows (it drives redis-py internals), each in a throwaway virtualenv."""
    if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
        session.run("bash", "tools/ensure-services.sh", external=True)
    session.run(
        "python",
        "packages/flowrra-redis/tests/redis_py_range.py",
        "--constraints",
        str(CONSTRAINTS),
        *session.posargs,
    )


@nox.session(python=PYTHONS[-1])
def latest(session: nox.Session) -> None:
    """The tests against the newest releases every range allows (not the lock), on the
    newest Python: tomorrow's breakage, today. Not in the default run."""
    _install(session, *_packages(extra="[test]"), f"./{TEST_PLUGIN}", locked=False)
    session.install("--upgrade", "--upgrade-strategy", "eager", "mypy", "types-croniter")
    _reinstall_from_tree(session)
    session.run("pip", "list", "--format=freeze")
    session.run("mypy", "--strict", *[f"packages/{name}/src" for name in PACKAGES])
    _run_tests(session, browsers=True)


@nox.session(venv_backend="venv")
def lock(session: nox.Session) -> None:
    """Resolve constraints.in afresh (newest releases, for every supported Python) into
    constraints.txt. Commit the refresh on its own, after the default run passes on it."""
    session.install("-c", str(CONSTRAINTS), "uv")
    resolved = session.run(
        "uv", "pip", "compile", "--universal", "--python-version", PYTHONS[0],
        "--no-header", "--no-annotate", "--upgrade", "constraints.in",
        silent=True,
    )  # fmt: skip
    assert isinstance(resolved, str)
    # Only the pins: uv's progress lines come back in the same output, and the local
    # distributions (./packages/...) are installed from their folders.
    pins = [line for line in resolved.splitlines() if re.match(r"[A-Za-z0-9][\w.-]*==", line)]
    header = (
        "# The lock: every tool and third-party dependency the nox sessions install.\n"
        "# Made by `nox -s lock` from constraints.in; do not edit by hand.\n"
    )
    CONSTRAINTS.write_text(header + "\n".join(sorted(pins, key=str.lower)) + "\n")
    session.log(f"{len(pins)} pins written to {CONSTRAINTS.name}")


def _install_docs(session: nox.Session) -> None:
    """MkDocs Material and mkdocstrings from the lock, and every distribution (from the
    working tree, with its test extras: what the pages' code blocks import)."""
    _install(
        session,
        "mkdocs",
        "mkdocs-material",
        "mkdocstrings[python]",
        "ruff",  # mkdocstrings formats long signatures with it
        "./packages/flowrra-core[all,testing]",
        *_packages(extra="[test]"),
    )
    session.install("--no-deps", "--no-build-isolation", "--force-reinstall", *_packages())


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, then every code block of every page.

    ``mkdocs build --strict``: a warning fails it, and so do a broken link, anchor or
    cross-reference; the API reference is rendered by mkdocstrings from the distributions'
    docstrings and signatures, the CLI reference from ``flowrra.cli``'s parser
    (``tools/docs_hooks.py``). Then ``tests/test_docs.py`` runs the Python blocks of every
    page (Redis ones against the local server) and parses the deployment files."""
    _install_docs(session)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))
    if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
        session.run("bash", "tools/ensure-services.sh", external=True)
    session.run("pytest", "tests/test_docs.py", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example in examples/ (the Flask one serves through gunicorn)."""
    _install(session, *_packages(), "gunicorn")
    for example in sorted((ROOT / "examples").glob("*.py")):
        session.run("python", str(example))


@nox.session
def demo(session: nox.Session) -> None:
    """The embedded demo."""
    _install(session, *_packages())
    session.run("flowrra", "demo")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not tests): in memory vs flowrra 0.1.8, then on Redis vs 0.1.8, arq,
    saq, taskiq and dramatiq (each in its own venv under bench/.venvs) and the machine's
    round-trip floor, then the scheduler's firing lateness on SQLite and PostgreSQL.
    ``-- --quick`` makes all short."""
    _install(session, *_packages(), "asyncpg")
    session.run("python", "bench/run_core.py", *session.posargs)
    session.run("python", "bench/run_redis.py", *session.posargs)
    session.run("python", "bench/redis_floor.py", *session.posargs)
    session.run("python", "bench/run_scheduler.py", *session.posargs)
