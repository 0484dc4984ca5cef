"""hornbeam: a pre-fork WSGI/ASGI server whose workers share state."""

__version__ = "0.1.0"

