"""The engine: reserve → run → settle → record. The same worker runs embedded in an app and
in ``flowrra worker``.

:class:`Worker` (:mod:`.loop`) is the composition of parts with one job each:

- :mod:`.reserving`: :class:`~.reserving.Reserver` takes messages from the broker for the
  slots, as many as are idle, one slot waiting on the broker at a time.
- :mod:`.running`: :class:`~.running.Runner` runs one attempt: RUNNING, the executor
  within the task's timeout, the retry policy's verdict on an error.
- :mod:`.settling`: :class:`~.settling.Settler` records the outcome and settles the
  message with the broker (ack, requeue with a due time, dead-letter).
- :mod:`.keepalive`: :class:`~.keepalive.Leases` holds what is reserved and renews its
  leases; :class:`~.keepalive.Heartbeat` announces the worker.
- :mod:`.draining`: :class:`~.draining.Drainer` stops them in order: running tasks finish
  within the grace period, what is left is released or recorded FAILED.
"""

from flowrra.worker.loop import Worker
from flowrra.worker.running import TaskTimeoutExpired

__all__ = ["TaskTimeoutExpired", "Worker"]
