"""C-STORE and C-ECHO as a requestor (SCU): used by ``alara-edge import`` to hand files to a
running agent, and by the simulated modality."""
from __future__ import annotations

from typing import Iterable

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification

from agent.sources.dicom.scp import no_delay


def send(datasets: Iterable[Dataset], host: str, port: int, called_ae: str = "ALARA_EDGE",
         calling_ae: str = "SIM_MODALITY", timeout_s: float = 30) -> list[int]:
    """C-STORE each dataset over one association; returns the status of each (or -1 when none came back)."""
    datasets = list(datasets)
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
            statuses.append(int(status.Status) if status and "Status" in status else -1)
    finally:
        assoc.release()
    return statuses


def echo(host: str, port: int, called_ae: str = "ALARA_EDGE", calling_ae: str = "SIM_MODALITY") -> int:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise ConnectionError("association not established")
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status and "Status" in status else -1
    finally:
        assoc.release()




def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else ""
    return ts if ts in ALL_TRANSFER_SYNTAXES else "1.2.840.10008.1.2.1"
