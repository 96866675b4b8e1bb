"""Monitoring: the HTTP(S) listener and its nats-server endpoints (/varz, /connz, ...), Go-style
value and JSON spelling, Prometheus /metrics, and the certificate expiry watch."""
