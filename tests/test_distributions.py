"""What PyPI shows of each distribution, checked on the wheels and sdists that
``nox -s lint`` builds into ``$FLOWRRA_DIST_DIR``: a LICENSE, project URLs, the Pythons we
test and nothing else, READMEs whose links work off this repository, and the lock step."""

from __future__ import annotations

import email.parser
import email.policy
import os
import re
import tarfile
import tomllib
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))
NAMES = [tomllib.loads((p / "pyproject.toml").read_text())["project"]["name"] for p in PACKAGES]
PYTHONS = os.environ.get("FLOWRRA_PYTHONS", "3.11 3.12 3.13").split()


@pytest.fixture(scope="module")
def dist() -> Path:
    folder = os.environ.get("FLOWRRA_DIST_DIR")
    if not folder:
        pytest.fail("FLOWRRA_DIST_DIR is not set: run these through `nox -s lint`")
    return Path(folder)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _wheel(dist: Path, name: str) -> Path:
    (wheel,) = dist.glob(f"{_norm(name)}-*.whl")
    return wheel


def _metadata(wheel: Path) -> EmailMessage:
    with zipfile.ZipFile(wheel) as archive:
        path = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        parser = email.parser.BytesParser(policy=email.policy.default)
        message = parser.parsebytes(archive.read(path))
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize("name", NAMES)
def test_each_distribution_builds_a_wheel_and_an_sdist(dist: Path, name: str) -> None:
    assert _wheel(dist, name)
    assert len(list(dist.glob(f"{_norm(name)}-*.tar.gz"))) == 1


@pytest.mark.parametrize("name", NAMES)
def test_wheel_and_sdist_ship_the_apache_license(dist: Path, name: str) -> None:
    license_text = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in license_text and b"Version 2.0" in license_text
    with zipfile.ZipFile(_wheel(dist, name)) as archive:
        (path,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(path) == license_text
    (sdist,) = dist.glob(f"{_norm(name)}-*.tar.gz")
    with tarfile.open(sdist) as archive:
        (member,) = [m for m in archive.getmembers() if m.name.endswith("/LICENSE")]
        handle = archive.extractfile(member)
        assert handle is not None and handle.read() == license_text
    metadata = _metadata(_wheel(dist, name))
    assert metadata["License-Expression"] == "Apache-2.0"


@pytest.mark.parametrize("name", NAMES)
def test_project_urls_and_classifiers_claim_what_is_tested(dist: Path, name: str) -> None:
    metadata = _metadata(_wheel(dist, name))
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL", []))
    assert set(urls) >= {"Homepage", "Documentation", "Repository", "Issues"}
    assert all(url.startswith("https://") for url in urls.values())
    classifiers = metadata.get_all("Classifier", [])
    claimed = [c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r".*:: 3\.\d+", c)]
    assert claimed == PYTHONS
    # A floor, no ceiling: a cap makes pip pick an old release on a newer Python.
    assert metadata["Requires-Python"] == f">={PYTHONS[0]}"


@pytest.mark.parametrize("name", NAMES)
def test_readme_renders_with_links_that_work_on_pypi(dist: Path, name: str) -> None:
    metadata = _metadata(_wheel(dist, name))
    assert metadata["Description-Content-Type"] == "text/markdown"
    readme = metadata.get_content()
    assert readme.startswith("# ")
    targets = re.findall(r"\]\(([^)]+)\)", readme)
    relative = [t for t in targets if not t.startswith(("https://", "#"))]
    assert not relative, f"{name}'s README links to {relative}: dead on PyPI"


@pytest.mark.parametrize("name", NAMES)
def test_distributions_pin_each_other_to_one_version(dist: Path, name: str) -> None:
    version = _metadata(_wheel(dist, name))["Version"]
    for requirement in _metadata(_wheel(dist, name)).get_all("Requires-Dist", []):
        sibling = re.match(r"(flowrra[a-z-]*)(\[[^\]]*\])?\s*([^;]*)", requirement)
        if sibling and sibling.group(1) in NAMES:
            assert sibling.group(3).strip() == f"=={version}", requirement


def test_flowrra_is_the_engine_with_an_extra_per_plugin(dist: Path) -> None:
    """``pip install flowrra`` (what 0.1.8 users type) installs the engine; the extras
    0.1.8 documented and one per plugin pull in the plugins."""
    metadata = _metadata(_wheel(dist, "flowrra"))
    with zipfile.ZipFile(_wheel(dist, "flowrra")) as archive:
        assert "flowrra/app.py" in archive.namelist()
    extras = set(metadata.get_all("Provides-Extra", []))
    assert extras >= {
        "redis", "scheduler", "postgresql", "mysql", "fastapi", "quart", "django",
        "ui-fastapi", "ui-flask", "ui-django", "ui", "all",
    }  # fmt: skip
    plain = [r for r in metadata.get_all("Requires-Dist", []) if "extra ==" not in r]
    assert plain == []  # the engine alone has no runtime dependency


TEST_TOOLS = {"pytest", "pytest_asyncio", "playwright", "_pytest"}


@pytest.mark.parametrize("name", NAMES)
def test_runtime_modules_import_no_test_tool(dist: Path, name: str) -> None:
    """Test support ships only in modules a declared ``testing`` extra covers; the rest
    of a distribution imports no test tool, so installing it pulls in none."""
    import ast

    metadata = _metadata(_wheel(dist, name))
    testing_extra = [r for r in metadata.get_all("Requires-Dist", []) if "'testing'" in r]
    with zipfile.ZipFile(_wheel(dist, name)) as archive:
        for path in (n for n in archive.namelist() if n.endswith(".py")):
            imported = set()
            for node in ast.walk(ast.parse(archive.read(path))):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
            tools = imported & TEST_TOOLS
            if not tools:
                continue
            # pytest_plugin.py: imported by pytest only (the pytest11 entry point).
            assert path.rsplit("/", 1)[-1] in {
                "testing.py",
                "browser_contract.py",
                "pytest_plugin.py",
            }, f"{path} imports {tools}: test support belongs in a testing module"
            assert testing_extra, f"{name} ships {path} but declares no 'testing' extra"
