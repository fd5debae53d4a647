"""What systemd hears from `alara-edge run` under Type=notify: READY once the SCP listens, a watchdog
ping while healthy, STOPPING on SIGTERM. A real notification socket, no systemd needed."""
import socket
import time

import pytest

from tests.conftest import AgentProcess


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield sock, str(path)
    sock.close()


def heard(sock, seconds: float) -> list[str]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
    return out


def test_ready_when_listening_then_watchdog_then_stopping(tmp_path, notify_socket):
    sock, path = notify_socket
    agent = AgentProcess(tmp_path / "agent", env={"NOTIFY_SOCKET": path}).start()
    try:
        first = heard(sock, 1.0)
        assert first[:1] == ["READY=1"], first
        with socket.create_connection(("127.0.0.1", agent.dicom_port), timeout=2):
            pass  # READY came after the SCP was listening
        assert "WATCHDOG=1" in heard(sock, 7.0)  # pinged every 5 s while healthy (WatchdogSec=30)
    finally:
        assert agent.stop() == 0
    assert "STOPPING=1" in heard(sock, 1.0)
