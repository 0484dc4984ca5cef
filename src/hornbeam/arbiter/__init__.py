"""The master process: binding, forking, supervising (see arbiter.py)."""

from hornbeam.arbiter.arbiter import Arbiter, serve

__all__ = ["Arbiter", "serve"]
