"""`alara-edge ack` and `alara-edge alerts --follow` beside a running agent, as a user types them."""
import os
import pty
import select
import signal
import subprocess
import time

from tests.conftest import agent_cmd, agent_env, run_agent
from tests.console.test_alerts import raise_alert


def test_ack_goes_through_the_running_agent(station):
    s = station(bind="0.0.0.0", token="secret-token")
    alert = raise_alert(s)
    config = str(s.config_file())
    refused = run_agent("ack", alert.id, "--by", "RT42", "-c", config)
    assert refused.returncode == 1 and "reason is required" in refused.stderr
    done = run_agent("ack", alert.id, "--by", "RT42", "--reason", "large patient", "-c", config)
    assert done.returncode == 0, done.stderr
    assert "through the running agent" in done.stdout
    assert [(a["alert_id"], a["by"], a["reason"]) for a in s.outbox("ack")] == [(alert.id, "RT42", "large patient")]


def test_alerts_follow_on_a_terminal_rings_and_colours(station):
    s = station()
    master, slave = pty.openpty()
    proc = subprocess.Popen(agent_cmd("alerts", "--follow", "-c", str(s.config_file())), stdin=slave, stdout=slave,
                            stderr=slave, env=agent_env(TERM="xterm"), close_fds=True,
                            # Ctrl-C as on a terminal, even when the suite itself runs as a background job
                            # (a shell without job control starts those with SIGINT ignored, inherited here)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(slave)
    output = b""

    def read_until(text: bytes, timeout: float = 20.0) -> bytes:
        nonlocal output
        deadline = time.monotonic() + timeout
        while text not in output and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    output += os.read(master, 65536)
                except OSError:
                    break
        assert text in output, output.decode(errors="replace")
        return output

    try:
        read_until(b"following the running agent")
        alert = raise_alert(s)
        line = next(l for l in read_until(alert.id.encode()).splitlines() if alert.id.encode() in l)
        assert line.startswith(b"\a\x1b[") and b"CRITICAL" in line  # bell, then colour
        run_agent("ack", alert.id, "--by", "RT42", "--reason", "protocol error", "-c", str(s.config_file()))
        read_until(f"{alert.id} by RT42 (protocol error)".encode())
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        os.close(master)
