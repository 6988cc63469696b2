"""The tests' URLConf: each test puts its own mount in ``urlpatterns``."""

from typing import Any

urlpatterns: list[Any] = []
