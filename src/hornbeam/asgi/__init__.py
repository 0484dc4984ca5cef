"""ASGI 3: HTTP scope and cycle, lifespan, WebSocket."""
