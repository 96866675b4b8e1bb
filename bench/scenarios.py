"""What each benchmark scenario runs and measures.

A scenario gets an ``Env`` (settings, certificates, a way to start a fresh server of the
implementation under test) and returns ``{metric key: value}`` for one run, including the
server's CPU seconds per operation under the key ``"cpu"`` where that makes sense.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.certs import CertFiles
from bench.load import (
    Probe,
    Sock,
    TLSSpec,
    mixed_sizes,
    nats_connect,
    open_idle,
    run_connrate,
    run_pubsub,
    run_reqrep,
    subscribe_many,
)
from bench.servers import ServerProcess

BIG_PAYLOAD = 64 * 1024


@dataclass
class Settings:
    payload: int = 128
    duration: float = 5.0        # seconds of load per run
    msgs: int = 0                # a fixed message count instead of a duration (0: use duration)
    conn_clients: int = 2        # concurrent connecting processes in the connection-rate runs
    mem_conns: tuple[int, int] = (1000, 10000)
    mem_subs: int = 10000
    reqrep_max: int = 0          # cap on requests per run (0: duration only)


@dataclass
class Env:
    impl: str                    # "pynatsd", "nats-server" or "sink"
    workdir: str
    certs: CertFiles
    settings: Settings
    server_kwargs: dict[str, object] = field(default_factory=dict)

    def server(self, tls: str = "none", **kw: object) -> ServerProcess:
        return ServerProcess(self.impl, self.workdir, tls=tls, certs=self.certs,
                             **{**self.server_kwargs, **kw})  # type: ignore[arg-type]

    def tls(self, mode: str) -> TLSSpec:
        return TLSSpec(mode, self.certs if mode != "none" else None)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_better: bool = True
    goal: float | None = None    # goal for the ratio pynatsd / nats-server
    scale: float = 1.0           # multiply the raw value by this for display
    digits: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    metrics: tuple[Metric, ...]
    run: Callable[[Env], dict[str, float]]
    cpu_unit: str = "msg"        # the operation the server CPU figure is per
    selfcheck: bool = False      # a generator self-check scenario (runs against the sink)


def _probe(srv: ServerProcess) -> Probe:
    return Probe(srv.cpu_seconds, srv.check_alive)


# -- pub/sub ---------------------------------------------------------------------------------
def _pubsub(subs: int, queue: bool = False, tls: str = "none", big: bool = False,
            blast: bool = False, mixed: bool = False) -> Callable[[Env], dict[str, float]]:
    def run(env: Env) -> dict[str, float]:
        s = env.settings
        size = BIG_PAYLOAD if big else s.payload
        sizes = mixed_sizes(size) if mixed else [size]
        mode = "blast" if blast else "discard"
        with env.server(tls, sink_mode=mode, payload=size) as srv:
            r = run_pubsub(srv.port, _probe(srv), tls=env.tls(tls), subs=subs, queue=queue, sizes=sizes,
                           duration=s.duration, msgs=s.msgs, blast=blast)
        fan = r.delivered / r.msgs if r.delivered else 1
        out = {"rate": (r.delivered or r.msgs) / r.elapsed, "in_rate": r.msgs / r.elapsed,
               "mbps": r.payload * fan / r.elapsed / 1e6, "gen_cpu": r.gen_cpu / r.msgs,
               "gen_peak": r.gen_peak}
        if env.impl != "sink":
            out["cpu"] = r.server_cpu / r.msgs
        return out
    return run


def _reqrep(responder: bool = True) -> Callable[[Env], dict[str, float]]:
    def run(env: Env) -> dict[str, float]:
        s = env.settings
        with env.server("none", sink_mode="echo", payload=s.payload) as srv:
            r = run_reqrep(srv.port, _probe(srv), tls=env.tls("none"), size=s.payload,
                           duration=s.duration, max_reqs=s.reqrep_max, responder=responder)
        out = {"p50": r.percentile(50), "p99": r.percentile(99),
               "rate": len(r.latencies) / r.elapsed, "gen_cpu": r.gen_cpu / len(r.latencies),
               "gen_peak": r.gen_peak}
        if env.impl != "sink":
            out["cpu"] = r.server_cpu / len(r.latencies)
        return out
    return run


def _conns(tls: str) -> Callable[[Env], dict[str, float]]:
    def run(env: Env) -> dict[str, float]:
        s = env.settings
        with env.server(tls, sink_mode="discard") as srv:
            r = run_connrate(srv.port, _probe(srv), tls=env.tls(tls), clients=s.conn_clients,
                             duration=s.duration)
        out = {"rate": r.rate, "gen_cpu": r.gen_cpu / r.conns, "gen_peak": r.gen_peak}
        if env.impl != "sink":
            out["cpu"] = r.server_cpu / r.conns
        return out
    return run


# -- memory ----------------------------------------------------------------------------------
def _settle_rss(srv: ServerProcess) -> int:
    # Give the server a moment to finish what the last PONG did not wait for (frees, GC).
    time.sleep(0.3)
    return srv.rss_bytes()


def _memory(env: Env) -> dict[str, float]:
    s = env.settings
    small, big = s.mem_conns
    out: dict[str, float] = {}
    socks: list[Sock] = []
    with env.server("none") as srv:
        try:
            base = _settle_rss(srv)
            open_idle(srv.port, small, socks)
            at_small = _settle_rss(srv)
            open_idle(srv.port, big - small, socks)
            at_big = _settle_rss(srv)
            srv.check_alive()
        finally:
            for sock in socks:
                sock.close()
    out.update(base=base, conns_small=at_small, conns_big=at_big, per_conn=(at_big - base) / big)
    with env.server("none") as srv:
        sock = nats_connect(srv.port, None, name="subs")
        try:
            base = _settle_rss(srv)
            subscribe_many(sock, s.mem_subs)
            at_subs = _settle_rss(srv)
            srv.check_alive()
        finally:
            sock.close()
    out.update(subs=at_subs, per_sub=(at_subs - base) / s.mem_subs)
    return out


# -- the catalogue ---------------------------------------------------------------------------
MSGS = Metric("rate", "msgs/s")


def scenarios(settings: Settings) -> list[Scenario]:
    small, big = settings.mem_conns
    p = settings.payload
    mib, kib = 1 / (1 << 20), 1 / 1024
    return [
        Scenario("pub", f"pub only ({p} B)", (Metric("rate", "msgs/s in", goal=0.40),), _pubsub(0)),
        Scenario("1to1", f"1 pub -> 1 sub ({p} B)", (Metric("rate", "msgs/s", goal=0.30),), _pubsub(1)),
        Scenario("fanout4", f"fan-out 1 -> 4 ({p} B)", (Metric("rate", "msgs/s out", goal=0.30),),
                 _pubsub(4)),
        Scenario("queue4", f"queue group of 4 ({p} B)", (Metric("rate", "msgs/s", goal=0.30),),
                 _pubsub(4, queue=True)),
        Scenario("reqrep", f"request/reply latency ({p} B)",
                 (Metric("p50", "p50 µs", higher_better=False, goal=1.5, scale=1e6, digits=1),
                  Metric("p99", "p99 µs", higher_better=False, scale=1e6, digits=1),
                  Metric("rate", "req/s")),
                 _reqrep(), cpu_unit="req"),
        Scenario("conn", "connections/s, plain", (Metric("rate", "conns/s", goal=0.5),), _conns("none"),
                 cpu_unit="conn"),
        Scenario("conn-tls", "connections/s, TLS", (Metric("rate", "conns/s", goal=0.7),), _conns("tls"),
                 cpu_unit="conn"),
        Scenario("conn-mtls", "connections/s, mutual TLS", (Metric("rate", "conns/s", goal=0.7),),
                 _conns("mtls"), cpu_unit="conn"),
        Scenario("1to1-mix", f"1 pub -> 1 sub, sizes {p // 2}..{p * 3 // 2} B (mean {p})",
                 (Metric("rate", "msgs/s"),), _pubsub(1, mixed=True)),
        Scenario("1to1-tls", f"1 pub -> 1 sub over TLS ({p} B)", (Metric("rate", "msgs/s", goal=0.5),),
                 _pubsub(1, tls="tls")),
        Scenario("1to1-64k", "1 pub -> 1 sub, 64 KiB payloads",
                 (Metric("mbps", "MB/s", goal=0.5, digits=1), Metric("rate", "msgs/s")),
                 _pubsub(1, big=True)),
        Scenario("mem", "memory (RSS)",
                 (Metric("base", "MiB, fresh server", higher_better=False, scale=mib, digits=1),
                  Metric("conns_small", f"MiB, {small:,} idle conns", higher_better=False, scale=mib, digits=1),
                  Metric("conns_big", f"MiB, {big:,} idle conns", higher_better=False, scale=mib, digits=1),
                  Metric("per_conn", "KiB per idle conn", higher_better=False, goal=2.0, scale=kib, digits=1),
                  Metric("subs", f"MiB, {settings.mem_subs:,} subs", higher_better=False, scale=mib,
                         digits=1),
                  Metric("per_sub", "bytes per sub", higher_better=False)),
                 _memory, cpu_unit=""),
    ]


def selfcheck_scenarios(settings: Settings) -> list[Scenario]:
    """The generator against the sink: each row is the most the generator can do here."""
    p = settings.payload
    return [
        Scenario("pub", f"publisher -> sink ({p} B)", (MSGS, Metric("mbps", "MB/s", digits=1)),
                 _pubsub(0), selfcheck=True),
        Scenario("sub", f"sink -> 1 subscriber ({p} B)", (MSGS, Metric("mbps", "MB/s", digits=1)),
                 _pubsub(1, blast=True), selfcheck=True),
        Scenario("sub4", f"sink -> 4 subscribers ({p} B)", (Metric("rate", "msgs/s out"),),
                 _pubsub(4, blast=True), selfcheck=True),
        Scenario("reqrep", f"requester <-> echo sink ({p} B)",
                 (Metric("p50", "p50 µs", higher_better=False, scale=1e6, digits=1),
                  Metric("p99", "p99 µs", higher_better=False, scale=1e6, digits=1),
                  Metric("rate", "req/s")),
                 _reqrep(responder=False), cpu_unit="req", selfcheck=True),
        Scenario("conn", "connections/s, plain", (Metric("rate", "conns/s"),), _conns("none"),
                 cpu_unit="conn", selfcheck=True),
        Scenario("conn-tls", "connections/s, TLS", (Metric("rate", "conns/s"),), _conns("tls"),
                 cpu_unit="conn", selfcheck=True),
        Scenario("conn-mtls", "connections/s, mutual TLS", (Metric("rate", "conns/s"),), _conns("mtls"),
                 cpu_unit="conn", selfcheck=True),
        Scenario("pub-tls", f"publisher -> sink over TLS ({p} B)", (MSGS,), _pubsub(0, tls="tls"),
                 selfcheck=True),
        Scenario("sub-tls", f"sink -> 1 subscriber over TLS ({p} B)", (MSGS,),
                 _pubsub(1, tls="tls", blast=True), selfcheck=True),
        Scenario("pub-64k", "publisher -> sink, 64 KiB", (Metric("mbps", "MB/s", digits=1),),
                 _pubsub(0, big=True), selfcheck=True),
        Scenario("sub-64k", "sink -> 1 subscriber, 64 KiB", (Metric("mbps", "MB/s", digits=1),),
                 _pubsub(1, big=True, blast=True), selfcheck=True),
    ]


def machine_description() -> dict[str, str]:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / (1 << 20):.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return {"cores": str(len(os.sched_getaffinity(0))), "cpu": model, "memory": mem, "kernel": os.uname().release}
