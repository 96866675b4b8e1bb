"""The nats-server configuration format and the options it resolves to: conf lexer and parser
(sans-IO), loading config file plus command-line flags, and the typed option dataclasses."""
