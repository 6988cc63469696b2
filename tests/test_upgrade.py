"""A 0.1.8 user upgrades: in a virtualenv holding ``flowrra==0.1.8`` from the registry, the
documented command (``pip install --upgrade flowrra``, with extras or through a plugin)
leaves the new Flowrra working and no file of the old one behind.

The engine is the ``flowrra`` distribution itself, so pip replaces 0.1.8 in place: it
removes the old version's recorded files just before it writes the new version's. (Were
the engine another distribution that ``flowrra`` depended on, pip would write it first and
then delete the paths 0.1.8 shared with it: a half-removed package.)

``nox -s upgrade`` builds the wheels into ``$FLOWRRA_DIST_DIR``; pip finds them there with
``--find-links`` as it would find the release on PyPI."""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)


def _pip(env: Path, *args: str) -> None:
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "-q", *args], check=True)


def _output(env: Path, *command: str) -> str:
    result = subprocess.run(
        [str(env / "bin" / command[0]), *command[1:]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def old_env(tmp_path: Path) -> Path:
    """A virtualenv with flowrra 0.1.8 installed from the registry."""
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    _pip(env, "install", "flowrra==0.1.8")
    assert _output(env, "python", "-c", "import flowrra; print(flowrra.__version__)").strip() == (
        "0.1.8"
    )
    return env


def _site_packages(env: Path) -> Path:
    (found,) = env.glob("lib/python3.*/site-packages")
    return found


def _assert_only_new_files(env: Path, version: str) -> None:
    """Every file under site-packages/flowrra is the new version's, unchanged, and every
    file the new version recorded is there: nothing left behind, nothing half-removed."""
    site = _site_packages(env)
    assert not list(site.glob("flowrra-0.1.8.dist-info")), "0.1.8's metadata is left"
    (info,) = site.glob(f"flowrra-{version}.dist-info")
    recorded: dict[Path, str] = {}
    with (info / "RECORD").open(newline="") as handle:
        for path, digest, _size in csv.reader(handle):
            if path.startswith("flowrra/") and digest:
                recorded[site / path] = digest
    on_disk = {p for p in (site / "flowrra").rglob("*") if p.is_file()}
    on_disk = {p for p in on_disk if "__pycache__" not in p.parts}
    assert on_disk == set(recorded), (
        f"left behind: {sorted(map(str, on_disk - set(recorded)))}; "
        f"missing: {sorted(map(str, set(recorded) - on_disk))}"
    )
    for path, digest in recorded.items():
        algorithm, expected = digest.split("=", 1)
        actual = base64.urlsafe_b64encode(hashlib.new(algorithm, path.read_bytes()).digest())
        assert actual.rstrip(b"=").decode() == expected, f"{path} is not the new version's"


def _new_version() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages/flowrra-core/src"))
    try:
        from flowrra._version import __version__
    finally:
        sys.path.pop(0)
    return __version__


@pytest.mark.parametrize(
    ("requirement", "imports"),
    [
        ("flowrra", ["flowrra"]),
        ("flowrra[redis,scheduler]", ["flowrra", "flowrra_redis", "flowrra_scheduler"]),
        # A 0.1.8 user adding a plugin only: pip upgrades flowrra in place for it.
        ("flowrra-redis", ["flowrra", "flowrra_redis"]),
    ],
)
def test_upgrade_from_0_1_8_leaves_a_working_flowrra(
    old_env: Path, requirement: str, imports: list[str]
) -> None:
    dist = os.environ.get("FLOWRRA_DIST_DIR")
    if not dist:
        pytest.fail("FLOWRRA_DIST_DIR is not set: run this through `nox -s upgrade`")
    constraints = os.environ.get("FLOWRRA_CONSTRAINTS")
    locked = ["-c", constraints] if constraints else []
    env = old_env
    _pip(env, "install", "--upgrade", "--find-links", dist, *locked, requirement)

    version = _new_version()
    probe = f"import {', '.join(imports)}; print(flowrra.__version__)"
    assert _output(env, "python", "-c", probe).strip() == version
    assert _output(env, "flowrra", "--version").strip().endswith(version)
    assert "Done in" in _output(env, "flowrra", "demo")
    _output(env, "python", "-m", "pip", "check")
    _assert_only_new_files(env, version)
