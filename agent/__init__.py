"""alara-edge: the radiation-dose edge agent.

Data flows one way: sources (:mod:`agent.sources`) → extraction (:mod:`agent.extract`) →
checks (:mod:`agent.checks`) → store and outbox (:mod:`agent.store`) → sinks
(:mod:`agent.uplink`, :mod:`agent.console`).  :mod:`agent.pipeline` joins them and
:mod:`agent.daemon` runs them.
"""
