"""Brokers shipped with the core. Others (Redis) come from plugins."""

from flowrra.brokers.memory import MemoryBroker

__all__ = ["MemoryBroker"]
