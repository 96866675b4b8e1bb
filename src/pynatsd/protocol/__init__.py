"""The NATS client wire protocol: the sans-IO parser (bytes in, ops out) and the encoders and
error texts (``wire``), spelled as nats-server spells them."""
