"""Talking to engines per request: the registry of models and the endpoints that serve
them, the shared client, routing and breakers, the one owner of an engine stream
(``failover.Upstreams``), what a stream tells, and the background checks."""
