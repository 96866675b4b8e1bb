"""Shared test helpers: server process launchers (pynatsd and the real nats-server), raw protocol
clients, transcript normalization and the differential script runner. ``certs.py`` (helper C)
holds the certificate factory."""
