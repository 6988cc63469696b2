"""Executors: where a task's function runs. See :class:`flowrra.protocols.Executor`."""

from flowrra.executors.cpu import CPUExecutor
from flowrra.executors.io import IOExecutor

__all__ = ["CPUExecutor", "IOExecutor"]
