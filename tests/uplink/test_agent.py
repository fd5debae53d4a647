"""The whole agent: real C-STOREs into ``alara-edge run`` (subprocess), the uplink, Mosquitto, the receiver."""
from __future__ import annotations

import random
import signal
import threading
import time

from pynetdicom import AE

from agent import config as config_mod
from agent.central.receiver import Receiver
from agent.sources.dicom import scu
from agent.store import connect, outbox
from simulator import rdsr
from tests import conftest as shared
from tests.conftest import AgentProcess
from tests.uplink.broker import Mosquitto
from tests.uplink.conftest import central_event_ids, central_view, wait_for
from tests.uplink.tap import Tap

SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700


class UplinkAgent(AgentProcess):
    """``alara-edge run`` as a subprocess, with its configuration and outbox at hand."""

    @property
    def config(self) -> config_mod.Config:
        return config_mod.load(self.config_path)

    def outbox(self) -> dict[str, int]:
        db = connect(self.db_path)
        try:
            return outbox.counts(db)
        finally:
            db.conn.close()


def agent_config(tmp_path, mqtt_port: int, **extra: str) -> str:
    lines = "\n".join(f"{k} = {v}" for k, v in {"port": mqtt_port, "keepalive_s": 5, "reconnect_min_s": 0.1,
                                                 "reconnect_max_s": 0.5, "rate_per_s": 200, **extra}.items())
    return f'[mqtt]\n{lines}\n\n[central]\ndatabase = "{tmp_path / "central.sqlite"}"\nclient_id = "central-e2e"\n'


def report(i: int):
    return rdsr.ct_report([rdsr.CTSeries(protocol="Head", ctdivol=f"{40 + i}.25", dlp=f"{700 + i}.5")],
                          patient=rdsr.Patient(name=f"Testperson^Nr{i:03d}", id=f"PID{i:05d}", birth_date="19500101"),
                          accession=f"ACC{i:05d}")


def c_store(port: int, ds) -> int:
    """One association, one C-STORE, as a modality sends it; the status, or -1 if none came back."""
    ae = AE(ae_title="SIM_CT")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="ALARA_EDGE")
    except Exception:
        return -1
    if not assoc.is_established:
        return -1
    try:
        status = assoc.send_c_store(ds)
        return int(status.Status) if status and "Status" in status else -1
    finally:
        assoc.release()


def test_200_reports_arrive_while_the_broker_is_down_and_reach_the_central_site_once(tmp_path):
    mqtt_port = shared.free_port()
    agent = UplinkAgent(tmp_path / "agent", agent_config(tmp_path, mqtt_port)).start()
    try:
        datasets = [report(i) for i in range(200)]
        assert scu.send(datasets, "127.0.0.1", agent.dicom_port) == [SUCCESS] * 200  # no broker: still stored
        counts = agent.outbox()
        assert counts.keys() == {"pending"} and counts["pending"] >= 200  # reports and their alerts
        broker = Mosquitto(tmp_path / "broker", port=mqtt_port).start()
        cfg = agent.config
        rx = Receiver(cfg).start()
        try:
            wait_for(lambda: len(central_event_ids(cfg)) == counts["pending"], timeout=60, what="the backlog")
            expected = {outbox.event_id("report", ds.SOPInstanceUID) for ds in datasets}
            assert {i for i in central_event_ids(cfg) if i.startswith("report-")} == expected
            view = central_view(cfg)
            assert (view["seq_gaps"], view["duplicates_dropped"], view["max_seq"]) == (0, 0, counts["pending"])
        finally:
            rx.stop()
            broker.stop()
    finally:
        agent.stop()


def test_agent_killed_while_modalities_send_loses_no_acknowledged_report(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    agent = UplinkAgent(tmp_path / "agent", agent_config(tmp_path, broker.port))
    cfg = agent.config
    rx = Receiver(cfg).start()
    rng = random.Random()
    acknowledged, kills, per_kill = set(), 0, []
    try:
        wait_for(rx.connected.is_set, what="the central receiver")
        agent.start()
        pending = [report(i) for i in range(48)]
        while pending:
            before = central_view(cfg).get("duplicates_dropped", 0)
            killer = None
            if kills < 6:
                delay = rng.uniform(0.1, 1.0)  # during a C-STORE, a commit, or the drain
                killer = threading.Timer(delay, lambda: agent.proc.send_signal(signal.SIGKILL))
                killer.start()
            while pending and agent.proc.poll() is None:
                status = c_store(agent.dicom_port, pending[0])
                if status == SUCCESS:
                    acknowledged.add(pending.pop(0).SOPInstanceUID)
                elif status != -1:
                    raise AssertionError(f"unexpected status 0x{status:04X}")
                if killer is None and not pending:
                    break
            if killer is not None:
                killer.join()
                agent.stop()
                kills += 1
                agent.start()  # the modality sends what was not acknowledged again
                time.sleep(0.5)
                per_kill.append(central_view(cfg).get("duplicates_dropped", 0) - before)
        wait_for(lambda: agent.outbox().keys() == {"delivered"}, timeout=60, what="the outbox to drain")
        expected = {outbox.event_id("report", uid) for uid in acknowledged}
        wait_for(lambda: expected <= set(central_event_ids(cfg)), timeout=30, what="every acknowledged report")
        ids = central_event_ids(cfg)
        reports = [i for i in ids if i.startswith("report-")]
        assert len(ids) == len(set(ids)) and len(reports) == 48 and kills >= 3
        view = central_view(cfg)
        assert view["seq_gaps"] == 0 and view["duplicates_dropped"] <= cfg.mqtt.window * kills
        assert max(per_kill) <= cfg.mqtt.window
    finally:
        agent.stop()
        rx.stop()
        broker.stop()


def test_store_quota_refuses_with_a700_and_the_alarm_reaches_the_central_site(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    agent = UplinkAgent(tmp_path / "agent", agent_config(tmp_path, broker.port, require_subscriber="false")
                        + "\n[store]\nquota_mb = 0.6\n").start()
    tap = Tap(broker.port, topic="alara/+/+/status")
    try:
        statuses = []
        for i in range(60):
            statuses.append(c_store(agent.dicom_port, report(i)))
            if statuses[-1] != SUCCESS:
                break
        assert statuses[-1] == OUT_OF_RESOURCES and statuses.count(SUCCESS) == len(statuses) - 1 >= 1
        wait_for(lambda: tap.messages and any(a["kind"] == "store_quota_reached"
                                              for a in tap.messages[-1].json["body"]["alarms"]),
                 what="the quota alarm in the retained status")
        stored = statuses.count(SUCCESS)
        wait_for(lambda: agent.outbox() == {"delivered": stored}, what="every stored report sent")
    finally:
        tap.close()
        agent.stop()
        broker.stop()
