"""TLS: contexts from ``tls {}`` blocks, TLS over asyncio transports (memory BIOs), what a peer
certificate says, handshake-failure logging, automatic certificate reload, dev certificates."""
