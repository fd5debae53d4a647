"""Dosimeter readings in the store: raw samples, DAP-meter procedures, per-minute aggregates, staff dose.

Data flows one way: the serial source (agent.sources.serial) hands each batch of driver readings to
:meth:`agent.readings.ledger.Ledger.record` inside one store transaction; the ledger credits dose
(:mod:`agent.readings.counters` handles resets and wrap-around), updates procedures and quarterly staff
totals, calls the checks hooks and queues what leaves the box in the outbox.  :mod:`agent.readings.reconcile`
is a pipeline stage comparing a DAP meter's procedure total with the modality's RDSR.
"""
