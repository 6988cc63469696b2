"""Test plugin: a broker and a backend for the ``testmem://`` scheme that record the
config they were built from, and a ``flowrra plugin-hello`` command."""

from __future__ import annotations

import argparse
from typing import Any

from flowrra import BackendConfig, BrokerConfig, MemoryBackend, MemoryBroker


class RecordingBroker(MemoryBroker):
    def __init__(self, config: BrokerConfig) -> None:
        super().__init__()
        self.config = config


class RecordingBackend(MemoryBackend):
    def __init__(self, config: BackendConfig) -> None:
        super().__init__(max_entries=config.max_entries)
        self.config = config


def make_broker(config: BrokerConfig) -> RecordingBroker:
    return RecordingBroker(config)


def make_backend(config: BackendConfig) -> RecordingBackend:
    return RecordingBackend(config)


def add_commands(commands: Any) -> None:
    hello: argparse.ArgumentParser = commands.add_parser("plugin-hello", help="test command")
    hello.add_argument("name")
    hello.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)
