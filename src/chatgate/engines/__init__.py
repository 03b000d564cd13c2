"""Engines, in four rooms:

- ``catalog``: what can be served (model profiles and their YAML under ``profiles/``,
  hardware fit, the model settings that outlive a restart);
- ``upstream``: talking to engines per request (the registry of models and the endpoints
  that serve them, the one shared client, routing and breakers, ``failover.Upstreams``,
  the one owner of an engine stream, and the background checks);
- ``admission``: fair admission to engine slots (a queue per pool, the pools of every
  model, the fleet-wide slot ledger in Redis);
- ``runtime``: engines chatgate runs itself (command lines, supervised processes and
  their liveness, the embedded llama-server, model switching, the fleet's leader).

``router``: ``/api/models``.
"""
