"""In-process notifications after a commit: sources publish, sinks (uplink, console) listen.

Nothing on the bus is the record of anything: it only says "look, something was committed".
A sink that misses a message loses nothing, because it reads the store.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

Listener = Callable[[str, Any], None]


class Bus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[tuple[frozenset[str] | None, Listener]] = []

    def subscribe(self, listener: Listener, topics: set[str] | None = None) -> Callable[[], None]:
        """Call ``listener(topic, payload)`` for each publish (on the publisher's thread). Returns an unsubscribe."""
        entry = (frozenset(topics) if topics else None, listener)
        with self._lock:
            self._listeners.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._listeners:
                    self._listeners.remove(entry)

        return unsubscribe

    def publish(self, topic: str, payload: Any = None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for topics, listener in listeners:
            if topics is None or topic in topics:
                try:
                    listener(topic, payload)
                except Exception:  # a broken sink must not break a source
                    import structlog

                    structlog.get_logger("agent.bus").exception("listener_failed", topic=topic)
