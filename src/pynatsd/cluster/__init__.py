"""Clustering: the route wire protocol (sans-IO parser and encoders) and the route manager
(listener, solicited routes, gossip, interest propagation, forwarding)."""
