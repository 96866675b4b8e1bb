"""pynatsd: a NATS message server in Python, wire-compatible with nats-server."""

__version__ = "0.1.0"
# The nats-server release whose client protocol pynatsd speaks; clients gate features on the
# INFO "version" field, so that is what we report there.
NATS_SERVER_COMPAT_VERSION = "2.15.1"
