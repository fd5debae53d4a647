"""The central site's receiver: every station's messages into one database, each exactly once.

``alara-edge central -c CONFIG`` runs :class:`~agent.central.receiver.Receiver`;
``alara-edge central-report -c CONFIG [--json]`` prints what arrived per station
(:mod:`agent.central.report`).
"""
