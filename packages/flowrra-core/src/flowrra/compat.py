"""``AsyncTaskExecutor``: the API of Flowrra's first README, kept as a thin alias.

It is a :class:`~flowrra.app.Flowrra` app configured from its three arguments; every
method is the app's.
"""

from __future__ import annotations

from flowrra.app import Flowrra
from flowrra.config import Config, ExecutorConfig
from flowrra.protocols import ResultBackend

__all__ = ["AsyncTaskExecutor"]


class AsyncTaskExecutor(Flowrra):
    """``AsyncTaskExecutor(num_workers=4, cpu_workers=None, backend=None)``."""

    def __init__(
        self,
        num_workers: int = 4,
        cpu_workers: int | None = None,
        backend: ResultBackend | None = None,
        *,
        config: Config | None = None,
    ) -> None:
        config = config or Config(
            executor=ExecutorConfig(num_workers=num_workers, cpu_workers=cpu_workers)
        )
        super().__init__(config, backend=backend)

    def is_running(self) -> bool:  # type: ignore[override]
        """A method here (``executor.is_running()``), a property on ``Flowrra``."""
        return self.worker.is_running
