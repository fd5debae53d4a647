"""The uplink sink: privacy-filtered report bodies into the outbox, and the outbox to the central broker.

* :class:`ReportOutboxStage` — pipeline stage queueing each stored report (``agent.uplink.stage``);
* :class:`Uplink` — the sender thread with ``start()``, ``stop(timeout)`` and ``health()`` (``agent.uplink.sender``);
* ``alara-edge outbox`` — look at and repair the outbox (``agent.uplink.command``).
"""
from .stage import ReportOutboxStage
from .sender import Uplink

__all__ = ["ReportOutboxStage", "Uplink"]
