"""Wall time per client connection in pynatsd's connection callbacks, for the connection-rate work.

Runs `python -m pynatsd ARGS` in this process with timers around the connection set-up functions
(client, TLS transport, server, OpenSSL's handshake step) and writes, every 3 s, the calls and
microseconds of wall time per connection of each to OUT (default /tmp/speed_wall.out). Drive it
with any client (e.g. bench.load.nats_connect in a loop) and compare wall time with CPU time: the
third session found each socket write costing 100-370 µs of wall time for ~8 µs of system CPU
(the woken client takes the core), which led to writing a connection's own answers at once.

    PYTHONPATH=/work/main/src python docs/dev-notes/speed_wall.py -c server.conf [--out FILE]
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

ACC: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])


def _timed(label: str, f: Callable[..., Any]) -> Callable[..., Any]:
    now = time.perf_counter_ns

    def wrapper(*a: Any, **k: Any) -> Any:
        t = now()
        try:
            return f(*a, **k)
        finally:
            x = ACC[label]
            x[0] += 1
            x[1] += now() - t

    return wrapper


def _install() -> None:
    from pynatsd import client, server
    from pynatsd.tls import transport

    targets: list[tuple[Any, list[str]]] = [
        (transport.TLSTransport, ["_raw_data_received", "_step", "_finish_handshake", "_read_plain",
                                  "_flush", "write", "tls_summary", "__init__"]),
        (client.ClientConnection, ["__init__", "connection_made", "_send_info_now", "_start_tls",
                                   "data_received", "_connect", "_ping", "flush", "close"]),
        (server.Server, ["info_for", "client_closed"]),
    ]
    for owner, names in targets:
        for n in names:
            setattr(owner, n, _timed(f"{owner.__name__}.{n}", getattr(owner, n)))
    transport._SSL_do_handshake = _timed("SSL_do_handshake", transport._SSL_do_handshake)


def _report(out: str) -> None:
    while True:
        time.sleep(3)
        n = ACC["ClientConnection.__init__"][0] or 1
        rows = sorted(ACC.items(), key=lambda kv: -kv[1][1])
        with open(out, "w") as f:
            f.write(f"connections {n}\n")
            for k, (calls, ns) in rows:
                f.write(f"{k:40s} calls/conn {calls / n:5.2f}  wall us/conn {ns / n / 1000:8.1f}\n")


def main() -> None:
    args = sys.argv[1:]
    out = "/tmp/speed_wall.out"
    if "--out" in args:
        i = args.index("--out")
        out = args[i + 1]
        del args[i : i + 2]
    _install()
    threading.Thread(target=_report, args=(out,), daemon=True).start()
    from pynatsd import cli

    cli.main(args)


if __name__ == "__main__":
    main()
