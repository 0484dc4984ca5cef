"""Pub/sub: the broker run by the arbiter, the client used by app code, their wire format."""
