"""Fair admission to engine slots: the per-pool queue (``queue``), the pools of every model
(``pool``), and the fleet-wide slot ledger in Redis (``shared``, ``ledger_*``)."""
