"""The full node: ingest over MQTT, validation, NACKs, storage (``lightnode node``).

``mqtt`` is the MQTT link (``Transport``), ``ingest`` the validation
pipeline from a received message to the ledger, ``embedded`` the in-process
broker a node starts when given none.
"""
