"""Result backends shipped with the core. Others (Redis) come from plugins."""

from flowrra.backends.base import BaseResultBackend
from flowrra.backends.memory import InMemoryBackend, MemoryBackend

__all__ = ["BaseResultBackend", "InMemoryBackend", "MemoryBackend"]
