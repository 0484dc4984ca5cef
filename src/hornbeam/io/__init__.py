"""The only package that touches sockets and transports."""
