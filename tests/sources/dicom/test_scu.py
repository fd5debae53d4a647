"""The requestor used by `alara-edge import` and the simulated modality, against a real SCP on loopback."""
import threading
import time

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification

from agent.sources.dicom.scp import STORAGE_SOP_CLASSES
from agent.sources.dicom.scu import NO_RESPONSE, echo, send
from simulator import rdsr
from tests.conftest import free_port


class SlowFirstAnswers:
    """A plain pynetdicom SCP that lets the first ``silent`` C-STOREs of each object wait past the sender's timeout."""

    def __init__(self, silent: int, hold_s: float):
        self.silent, self.hold_s = silent, hold_s
        self.seen: dict[str, int] = {}
        self.associations = 0
        self._lock = threading.Lock()
        self.ae = AE(ae_title="SLOW_SCP")
        for uid in STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        self.port = free_port()
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self.on_store), (evt.EVT_ESTABLISHED, self.on_established)])

    def on_established(self, _event):
        with self._lock:
            self.associations += 1

    def on_store(self, event):
        uid = str(event.request.AffectedSOPInstanceUID)
        with self._lock:
            self.seen[uid] = self.seen.get(uid, 0) + 1
            times = self.seen[uid]
        if times <= self.silent:
            time.sleep(self.hold_s)  # the sender has given up and aborted by now
        return 0x0000

    def stop(self):
        self.ae.shutdown()


def reports(n):
    return [rdsr.ct_report([rdsr.CTSeries("Head", ctdivol=f"{40 + i}.5")]) for i in range(n)]


def test_an_unanswered_c_store_is_sent_once_more_on_a_new_association():
    scp = SlowFirstAnswers(silent=1, hold_s=2.5)
    try:
        first, second = reports(2)
        scp.seen[str(second.SOPInstanceUID)] = 1  # only the first object's first C-STORE goes unanswered
        assert send([first, second], "127.0.0.1", scp.port, "SLOW_SCP", timeout_s=1) == [0x0000, 0x0000]
        assert scp.seen[str(first.SOPInstanceUID)] == 2  # sent again after no response came
        assert scp.associations == 2
    finally:
        scp.stop()


def test_an_object_unanswered_twice_is_reported_and_the_others_still_go():
    scp = SlowFirstAnswers(silent=2, hold_s=2.5)
    try:
        first, second = reports(2)
        scp.seen[str(second.SOPInstanceUID)] = 2  # answered at once
        assert send([first, second], "127.0.0.1", scp.port, "SLOW_SCP", timeout_s=1) == [NO_RESPONSE, 0x0000]
        assert scp.seen[str(first.SOPInstanceUID)] == 2  # tried twice, no more
        assert scp.associations == 3
    finally:
        scp.stop()


def test_an_unanswered_c_echo_is_sent_once_more():
    calls = []

    def on_echo(_event):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(2.5)  # the requestor has given up and aborted by now
        return 0x0000

    ae = AE(ae_title="SLOW_SCP")
    ae.add_supported_context(Verification)
    port = free_port()
    ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        assert echo("127.0.0.1", port, "SLOW_SCP", timeout_s=1) == 0x0000
        assert len(calls) == 2
    finally:
        ae.shutdown()
