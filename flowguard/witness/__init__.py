"""A C2SP tlog-witness (https://c2sp.org/tlog-witness) that any partner runs.

* :mod:`~flowguard.witness.state`: the latest cosigned tree head of each log, checked and
  advanced atomically (SQLite or PostgreSQL).
* :mod:`~flowguard.witness.service`: the ``add-checkpoint`` rules, pure of HTTP.
* :mod:`~flowguard.witness.app`: the ASGI app serving ``POST /add-checkpoint``.
* :mod:`~flowguard.witness.client`: the log's side, collecting cosignatures.
"""
