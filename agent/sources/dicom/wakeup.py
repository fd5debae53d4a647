"""pynetdicom's association threads woken when there is work, not only on their next 1 ms poll.

pynetdicom (3.0) runs two polling threads per association.  The DUL reactor, when it found nothing to
do, sleeps ``_run_loop_delay`` (1 ms) before it looks at the socket and at what the association has
queued to send; the association's reactor sleeps 1 ms before it looks for a decoded DIMSE message.  So
each C-STORE waits for the next poll of each thread before it is handled, and its response for one
more before it is sent.  The polling is upstream's known trade-off between idle CPU and latency
(pynetdicom issues 120 and 650, pull request 139); pynetdicom has no event-driven mode.

After :func:`install`, the same sleeps end as soon as there is work: the DUL thread waits in
``select()`` on its socket and on a wake-up socket written whenever a primitive is queued for it to
send; the association thread waits on its DIMSE message queue.  The longest wait stays pynetdicom's,
so timers, releases, aborts and the stop flag are looked at exactly as often as before: only received
data, responses and decoded messages are handled sooner, without more wake-ups.  On the two cores of
a small box, where the pipeline's worker processes one report while the next arrives, full ingest
went from 0.79 to 0.92 of a bare pynetdicom SCP's rate (docs/benchmarks.md).

pynetdicom's loops call ``time.sleep`` through the ``time`` of their modules; :func:`install` gives the
two modules one whose ``sleep`` waits this way when called on a DUL or association thread with the
loops' own delays, and sleeps as before for any other caller.  Should a later pynetdicom no longer
wait through them, the agent is back to pynetdicom's polling: slower, never wrong.
"""
from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

import pynetdicom.association
import pynetdicom.dul
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

ASSOCIATION_POLL_S = 0.001  # the association reactor's sleep in pynetdicom (Association._run_reactor)
longest_wait_s: float | None = None  # None: pynetdicom's own delays (tests lengthen it to see the wake-ups)


class WakingDUL(DULServiceProvider):
    """The DUL reactor, woken by received data and by a primitive to send."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self.wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake()

    def wake(self) -> None:
        with self._wake_lock:  # never a write to a closed (and perhaps reused) descriptor
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"\0")
                except OSError:  # full (the reactor is awake already) or closed
                    pass

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            with self._wake_lock:
                self._wake_w.close()
                self._wake_r.close()
                self._wake_w = None

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, or until the peer sends or the association queues something to send."""
        watched = [self._wake_r]
        conn = self.socket
        # as AssociationSocket.ready looks: data on a socket it would not read must not end every wait
        if conn is not None and conn.socket is not None and getattr(conn, "_is_connected", False):
            watched.append(conn.socket)
        try:
            ready, _, _ = select.select(watched, [], [], seconds)
        except (OSError, ValueError):  # the connection closed meanwhile: the loop finds out, as before
            time.sleep(seconds)
            return
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:  # drained
                pass


def _wait_for_message(assoc: Association, seconds: float) -> None:
    """Sleep up to ``seconds``, or until the DUL has put a decoded DIMSE message on ``assoc``'s queue.

    A requestor's ``send_c_*`` waits for its response in the queue's ``get()``, on the same condition,
    while this thread is paused and leaves the message to it; ``put()`` wakes one waiter only, so a
    wake-up this wait took is passed on (else the sender slept until its DIMSE timeout)."""
    messages = assoc.dimse.msg_queue
    with messages.not_empty:
        if not messages.queue:
            messages.not_empty.wait(seconds)
        if messages.queue:
            messages.not_empty.notify()


class _Time:
    """pynetdicom's modules' ``time``: the real module, but for the reactors' sleeps."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        thread = threading.current_thread()
        if isinstance(thread, WakingDUL) and seconds == thread._run_loop_delay:
            thread.wait(longest_wait_s or seconds)
        elif isinstance(thread, Association) and seconds == ASSOCIATION_POLL_S:
            _wait_for_message(thread, longest_wait_s or seconds)
        else:
            time.sleep(seconds)


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Make the associations created from now on in this process wake on work (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        pynetdicom.association.DULServiceProvider = WakingDUL  # Association.__init__ creates its DUL by this name
        pynetdicom.association.time = pynetdicom.dul.time = _Time()
        _installed = True
