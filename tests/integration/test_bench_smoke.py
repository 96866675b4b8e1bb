"""Smoke test of the benchmark (bench/), small enough for every `make test` (about 15 s): one
short run of a few scenarios against pynatsd and nats-server together (a queue group, which
exercises the exact delivery count; subscribers over TLS; request/reply; mutual-TLS connection
rate; memory), the generator self-check against its sink, and a profiled run. Each must exit 0
and print a table with a number in every cell, no failed run, and ratios that match the
columns. It proves the benchmark works; it never judges speed. (`make bench-quick` runs every
scenario.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bench.load import PING, Block, mixed_sizes
from bench.scenarios import Scenario, Settings, scenarios, selfcheck_scenarios

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"^-?[0-9][0-9,]*(\.[0-9]+)?$")
SHORT = ["--quick", "--duration", "0.3"]
# One of each kind of load: pub/sub with the queue-group count, TLS subscribers (memory BIOs),
# request/reply, TLS connections with a client certificate, idle connections and subscriptions.
PAIR_SCENARIOS = ["queue4", "1to1-tls", "reqrep", "conn-mtls", "mem"]
SELFCHECK_SCENARIOS = ["sub4", "sub-tls", "reqrep", "conn-tls"]


def run_bench(tmp_path: Path, *args: str, timeout: float = 90) -> tuple[str, str]:
    out = tmp_path / "report.md"
    proc = subprocess.run([sys.executable, "-m", "bench", *SHORT, "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = out.read_text()
    assert report.strip() in proc.stdout  # the table printed is the table written
    assert "FAILED" not in proc.stderr and "Failed runs" not in report, report + proc.stderr
    return report, proc.stderr


def table_rows(report: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in report.splitlines() if line.startswith("| ")]
    assert rows, f"no table in:\n{report}"
    return rows


def value(cell: str) -> float:
    assert NUMBER.match(cell), f"not a number: {cell!r}"
    return float(cell.replace(",", ""))


def check_table(report: str, scens: list[Scenario], columns: list[str]) -> dict[tuple[str, str], list[str]]:
    """Every scenario's title and metric rows appear in order, each of ``columns`` a number,
    positive except memory growth figures (small counts can round to 0). Returns the rows."""
    rows = table_rows(report)
    header, body = rows[0], rows[1:]
    cols = [header.index(c) for c in columns]
    seen: list[tuple[str, str]] = []
    title = ""
    by_metric = {}
    for row in body:
        title = row[0] or title
        seen.append((title, row[1]))
        by_metric[(title, row[1])] = row
        for col in cols:
            v = value(row[col])
            assert v > 0 or " per " in row[1], f"{title} / {row[1]}: {header[col]} is {v}"
    assert seen == [(s.title, m.label) for s in scens for m in s.metrics]
    return by_metric


def select(scens: list[Scenario], names: list[str]) -> list[Scenario]:
    by_name = {s.name: s for s in scens}
    return [by_name[n] for n in names]


def quick() -> Settings:
    return Settings(duration=0.3, mem_conns=(20, 50), mem_subs=200)


@pytest.mark.timeout(120)
def test_short_run_against_both_servers_gives_numbers_ratio_and_goal(tmp_path: Path) -> None:
    report, log = run_bench(tmp_path, "--scenarios", ",".join(PAIR_SCENARIOS),
                            "--mem-conns", "20,50", "--mem-subs", "200")
    scens = select(scenarios(quick()), PAIR_SCENARIOS)
    rows = check_table(report, scens, ["pynatsd", "nats-server"])
    header = table_rows(report)[0]
    assert header[2:4] == ["pynatsd", "nats-server"]
    ratio_col, goal_col = header.index("ratio pynatsd / nats-server"), header.index("goal")
    for (title, label), row in rows.items():
        py, ns = value(row[2]), value(row[3])
        if ns > 0 and abs(py) >= 0.1:
            # The ratio of the medians, to the printed precision of the columns.
            assert value(row[ratio_col]) == pytest.approx(py / ns, rel=0.02, abs=0.006), (title, label)
    assert rows[("queue group of 4 (128 B)", "msgs/s")][goal_col].startswith("≥ 0.3 ")
    assert rows[("request/reply latency (128 B)", "p50 µs")][goal_col].startswith("≤ 1.5 ")
    assert rows[("connections/s, mutual TLS", "conns/s")][goal_col].startswith("≥ 0.7 ")
    # Both servers ran each scenario once, pynatsd first.
    runs = re.findall(r"^\[([\w-]+)\] round 1/1 ([\w-]+): ", log, re.M)
    assert runs == [(n, impl) for n in PAIR_SCENARIOS for impl in ("pynatsd", "nats-server")]


@pytest.mark.timeout(120)
def test_self_check_measures_the_generator_against_the_sink(tmp_path: Path) -> None:
    report, _ = run_bench(tmp_path, "--self-check", "--scenarios", ",".join(SELFCHECK_SCENARIOS))
    check_table(report, select(selfcheck_scenarios(quick()), SELFCHECK_SCENARIOS), ["generator ceiling"])


def test_list_names_every_scenario() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if not line.startswith("self-check:")]
    assert names == [s.name for s in scenarios(quick())]
    assert len(names) == 12


def test_subscriber_frame_check_accepts_what_was_published_and_nothing_else() -> None:
    blk = Block(mixed_sizes(128))
    assert blk.check(blk.msg) is None
    assert blk.check(blk.msg[37:]) is None                       # a read that starts mid-frame
    first = blk.msg_lens[0]
    assert blk.check(blk.msg[:first] + PING + blk.msg[first:]) is None   # the server's RTT ping
    # Another message's payload (same size) in its place: out of order for a subscriber that
    # gets every message; a queue member gets a subsequence, so that is fine there.
    n = len(blk.sizes)
    swapped = blk.msg.replace(blk.payloads[1], blk.payloads[1 + n], 1)
    assert blk.check(swapped) == f"message {1 + n} after message 0"
    assert blk.check(swapped, in_order=False) is None
    # A changed payload byte, a wrong sid: caught either way.
    corrupt = blk.msg.replace(blk.payloads[2], blk.payloads[2][:-1] + b"y", 1)
    for in_order in (True, False):
        assert "is not message 2's" in (blk.check(corrupt, in_order) or "")
    assert "unexpected frame" in (blk.check(blk.msg.replace(b"MSG bench.s 1 ", b"MSG bench.s 9 ", 1)) or "")
    # Byte accounting for runs of whole blocks plus a remainder.
    assert blk.delivered_bytes(blk.count + 2) == len(blk.msg) + blk.msg_lens[0] + blk.msg_lens[1]
    assert blk.msg_prefix(2) == blk.msg[:blk.msg_lens[0] + blk.msg_lens[1]]


@pytest.mark.timeout(120)
def test_profile_runs_pynatsd_under_cprofile_and_prints_top_functions(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--profile", "pub", "--profiler", "cprofile",
                           "--duration", "0.3", "--top", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert re.search(r"^\[pub\] under cprofile: msgs/s in [0-9,]+ ", proc.stdout, re.M)
    assert "== top 5 by own time (tottime) ==" in proc.stdout
    assert "== top 5 by cumulative time ==" in proc.stdout
    assert "cli.py" in proc.stdout  # pynatsd's own frames were recorded
