"""C-ECHO: the verification service, answered while the agent can store."""
from __future__ import annotations

from typing import Callable

from pynetdicom import events

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110


def make_handler(healthy: Callable[[], bool]) -> Callable[[events.Event], int]:
    def handle_echo(event: events.Event) -> int:
        return SUCCESS if healthy() else PROCESSING_FAILURE

    return handle_echo
