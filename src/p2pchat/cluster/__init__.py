"""How the nodes of one server share who is online and what is pending: the ``Cluster``
interface and its one-node form (``base.py``), and the Redis backend of several nodes
(``redis_*.py``, with its scripts in ``lua/``). See docs/architecture.md."""
