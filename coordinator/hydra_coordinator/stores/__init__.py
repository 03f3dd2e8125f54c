"""State outside a request: the response cache, rate limits and usage counters
(Redis or in process) and the knowledge base (Qdrant). :mod:`.lifecycle` wires them in."""
