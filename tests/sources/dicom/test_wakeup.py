"""pynetdicom's association threads woken by work instead of polls (agent/sources/dicom/wakeup.py)."""
import os
import subprocess
import time

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from agent.sources.dicom import wakeup
from agent.sources.dicom.scp import no_delay
from agent.sources.dicom.scu import echo
from tests.conftest import dcmtk, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@pytest.fixture
def echo_scp(monkeypatch):
    """A pynetdicom C-ECHO SCP in this process, its associations' waits lengthened to half a second: a
    request handled only at the next poll would take that long."""
    wakeup.install()
    monkeypatch.setattr(wakeup, "longest_wait_s", 0.5)
    ae = AE(ae_title="WAKE_SCP")
    ae.add_supported_context(Verification)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
    yield port
    server.shutdown()


@pytest.mark.skipif(dcmtk("echoscu") is None, reason="DCMTK echoscu not installed")
def test_requests_are_answered_as_they_arrive_not_at_the_threads_next_poll(echo_scp):
    # 20 C-ECHOs on one association: with each thread waiting out its 0.5 s, every request would wait
    # for the DUL's poll and the association's, and its response for the DUL's again (about 20 s)
    started = time.monotonic()
    done = subprocess.run([dcmtk("echoscu"), "--repeat", "20", "-aec", "WAKE_SCP", "127.0.0.1", str(echo_scp)],
                          capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 5.0, f"20 C-ECHOs and a release took {took:.1f} s"


def test_an_idle_or_cut_association_keeps_the_agent_idle(agent_process):
    # a wait that ends at once without the loop reading the socket would spin a core
    agent = agent_process()
    pid = agent.proc.pid
    ae = AE(ae_title="IDLE_SCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", agent.dicom_port, ae_title="ALARA_EDGE")
    assert assoc.is_established
    before = _cpu_s(pid)
    time.sleep(2.0)
    idle = _cpu_s(pid) - before
    assert idle < 0.6, f"the agent used {idle:.2f} s of CPU in 2 s beside one idle association"
    assoc.dul.socket.socket.shutdown(2)  # the modality's end goes away without a release or abort
    assoc.dul.socket.socket.close()
    time.sleep(0.5)
    before = _cpu_s(pid)
    time.sleep(2.0)
    after_cut = _cpu_s(pid) - before
    assert after_cut < 0.6, f"the agent used {after_cut:.2f} s of CPU in 2 s after a connection was cut"
    assert echo("127.0.0.1", agent.dicom_port, "ALARA_EDGE") == 0x0000  # and it still answers


def test_a_requestor_in_the_same_process_gets_each_response_as_it_comes():
    # an SCU beside the agent's SCP (the tests' senders, an embedded forwarder): send_c_echo waits for its
    # response in the DIMSE queue's get(), and its association thread, in its wait, on the same condition.
    # The response's single wake-up must not be taken by the thread that leaves it there: the sender
    # waited out its DIMSE timeout for about one C-ECHO in five after the first on an association.
    wakeup.install()
    scp = AE(ae_title="WAKE_SCP")
    scp.add_supported_context(Verification)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
    try:
        ae = AE(ae_title="WAKE_SCU")
        ae.dimse_timeout = 2
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="WAKE_SCP", evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
        assert assoc.is_established
        slowest = 0.0
        for _ in range(100):
            started = time.monotonic()
            status = assoc.send_c_echo()
            slowest = max(slowest, time.monotonic() - started)
            assert status and status.Status == 0x0000
        assoc.release()
    finally:
        server.shutdown()
    assert slowest < 1.0, f"a C-ECHO's response, there at once, reached its sender after {slowest:.1f} s"
