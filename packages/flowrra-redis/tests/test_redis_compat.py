"""flowrra-redis relies on a few redis-py internals; a redis-py without them is refused at
import with the supported versions, not met as an AttributeError deep inside a send."""

from __future__ import annotations

import subprocess
import sys

import redis
from flowrra_redis._redis_compat import SUPPORTED
from packaging.specifiers import SpecifierSet

from flowrra.exceptions import PluginError


def test_the_installed_redis_py_is_a_supported_one() -> None:
    assert SUPPORTED.startswith(">=") or SUPPORTED.startswith("<"), SUPPORTED
    assert redis.__version__ in SpecifierSet(SUPPORTED)
    assert "<" in SUPPORTED  # a tested upper bound


def test_a_redis_py_without_what_the_pipeline_needs_is_refused_at_import() -> None:
    # A redis-py release that dropped an internal the pipeline drives.
    probe = (
        "import redis._parsers.base as base\n"
        "del base.BaseParser.parse_error\n"
        "import flowrra_redis\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert f"{PluginError.__module__}.PluginError" in result.stderr
    assert f"flowrra-redis needs redis-py {SUPPORTED}" in result.stderr
    assert "BaseParser.parse_error" in result.stderr
    assert f"pip install 'redis[hiredis]{SUPPORTED}'" in result.stderr
