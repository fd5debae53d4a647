"""C-STORE and C-ECHO as a requestor (SCU): used by ``alara-edge import`` to hand files to a
running agent, and by the simulated modality.

A C-STORE (or C-ECHO) that gets no response is sent once more, on a new association. pynetdicom 3.0.4's
requestor can lose a response to a race of its own: ``send_c_store`` pauses the association's
reactor by a flag the reactor may not have updated yet, and the reactor then takes the response
off the queue ("Received unexpected C-STORE service message"), so the sender waits out its
timeout (seen about once in 3,000-7,500 C-STOREs beside a CPU load, bench/scp_ingest.py). An
object the agent has already stored is a no-op when it comes again.
"""
from __future__ import annotations

from typing import Iterable

import structlog
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification

from agent.sources.dicom.scp import no_delay

log = structlog.get_logger("agent.dicom.scu")

NO_RESPONSE = -1


def send(datasets: Iterable[Dataset], host: str, port: int, called_ae: str = "ALARA_EDGE",
         calling_ae: str = "SIM_MODALITY", timeout_s: float = 30) -> list[int]:
    """C-STORE each dataset, over one association while they are answered; returns the status of
    each (or -1 when none came back, twice: see the module's note)."""
    datasets = list(datasets)
    statuses: list[int] = []
    retried: set[int] = set()
    while len(statuses) < len(datasets):
        start = len(statuses)
        got = _send_until_unanswered(datasets[start:], host, port, called_ae, calling_ae, timeout_s)
        unanswered = start + len(got) - 1
        if got[-1] == NO_RESPONSE and unanswered not in retried:
            retried.add(unanswered)
            log.warning("cstore_no_response", called_ae=called_ae, peer=f"{host}:{port}", timeout_s=timeout_s,
                        sop_instance_uid=str(datasets[unanswered].get("SOPInstanceUID", "")), action="sent again")
            got = got[:-1]
        statuses.extend(got)
    return statuses


def _send_until_unanswered(datasets: list[Dataset], host: str, port: int, called_ae: str, calling_ae: str,
                           timeout_s: float) -> list[int]:
    """One association: C-STORE each dataset until one gets no response (pynetdicom aborts then)."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    # one presentation context per (SOP class, transfer syntax): an acceptor picks one syntax per context
    for sop_class, ts in sorted({(str(ds.SOPClassUID), _transfer_syntax(ds)) for ds in datasets}):
        ae.add_requested_context(sop_class, ts)
    assoc = ae.associate(host, port, ae_title=called_ae, evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
    if not assoc.is_established:
        raise ConnectionError(f"association with {called_ae}@{host}:{port} was not established")
    statuses = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if status and "Status" in status else NO_RESPONSE)
            if statuses[-1] == NO_RESPONSE:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def echo(host: str, port: int, called_ae: str = "ALARA_EDGE", calling_ae: str = "SIM_MODALITY",
         timeout_s: float = 10) -> int:
    """C-ECHO; returns its status, or -1 when none came back, twice (see the module's note)."""
    for attempt in (1, 2):
        status = _echo_once(host, port, called_ae, calling_ae, timeout_s)
        if status != NO_RESPONSE:
            return status
        log.warning("cecho_no_response", called_ae=called_ae, peer=f"{host}:{port}", timeout_s=timeout_s,
                    action="sent again" if attempt == 1 else "gave up")
    return NO_RESPONSE


def _echo_once(host: str, port: int, called_ae: str, calling_ae: str, timeout_s: float) -> int:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_ae, evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
    if not assoc.is_established:
        raise ConnectionError(f"association with {called_ae}@{host}:{port} was not established")
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status and "Status" in status else NO_RESPONSE
    finally:
        if assoc.is_established:
            assoc.release()


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else ""
    return ts if ts in ALL_TRANSFER_SYNTAXES else "1.2.840.10008.1.2.1"
