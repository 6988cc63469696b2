"""Brokers shipped with the core. Others (Redis) come from plugins."""

from flowrra.brokers.base import BaseBroker
from flowrra.brokers.memory import MemoryBroker

__all__ = ["BaseBroker", "MemoryBroker"]
