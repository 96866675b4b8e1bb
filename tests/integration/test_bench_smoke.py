"""Smoke test of the benchmark (bench/): the quick mode runs every scenario against each server,
and the generator self-check runs against its sink, and each prints a table with a row per
metric holding a positive number. It proves the benchmark works; it never judges speed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bench.load import PING, Block, mixed_sizes
from bench.scenarios import Settings, scenarios, selfcheck_scenarios

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"^[0-9][0-9,]*(\.[0-9]+)?$")


def run_bench(tmp_path: Path, *args: str) -> tuple[str, str]:
    out = tmp_path / "report.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=570,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = out.read_text()
    assert report.strip() in proc.stdout  # the table printed is the table written
    return report, proc.stderr


def table_rows(report: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in report.splitlines() if line.startswith("| ")]
    assert rows, f"no table in:\n{report}"
    return rows


def check_table(report: str, expected: list[tuple[str, list[str]]], column: str) -> None:
    """Every scenario's title and metric rows appear in order, the value in ``column`` positive."""
    rows = table_rows(report)
    header, body = rows[0], rows[1:]
    col = header.index(column)
    seen: list[tuple[str, str]] = []
    title = ""
    for row in body:
        title = row[0] or title
        seen.append((title, row[1]))
        value = row[col]
        assert NUMBER.match(value), f"{title} / {row[1]}: {column} is {value!r}"
        assert float(value.replace(",", "")) > 0, f"{title} / {row[1]}: {value}"
    assert seen == [(t, m) for t, metrics in expected for m in metrics]


def catalogue(quick_settings: Settings, selfcheck: bool = False) -> list[tuple[str, list[str]]]:
    scens = selfcheck_scenarios(quick_settings) if selfcheck else scenarios(quick_settings)
    return [(s.title, [m.label for m in s.metrics]) for s in scens]


def quick() -> Settings:
    return Settings(duration=1.0, mem_conns=(100, 1000), mem_subs=1000)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("server_impl", ["nats-server", "pynatsd"])
def test_quick_run_has_a_positive_row_per_metric(tmp_path: Path, server_impl: str) -> None:
    impl = server_impl
    report, log = run_bench(tmp_path, "--impl", impl)
    check_table(report, catalogue(quick()), impl)
    # One progress line per scenario, none failed.
    assert "FAILED" not in log
    assert len(re.findall(rf"^\[[\w-]+\] round 1/1 {impl}: ", log, re.M)) == len(scenarios(quick()))


@pytest.mark.timeout(600)
def test_both_servers_same_run_gives_ratio_and_goal(tmp_path: Path) -> None:
    report, _ = run_bench(tmp_path, "--scenarios", "pub,reqrep,mem")
    rows = table_rows(report)
    header = rows[0]
    assert header[2:4] == ["pynatsd", "nats-server"]
    ratio_col, goal_col = header.index("ratio pynatsd / nats-server"), header.index("goal")
    by_metric = {(r[0], r[1]): r for r in rows[1:]}
    pub = by_metric[("pub only (128 B)", "msgs/s in")]
    py, ns = (float(pub[i].replace(",", "")) for i in (2, 3))
    assert float(pub[ratio_col]) == pytest.approx(py / ns, abs=0.006)
    assert pub[goal_col].startswith("≥ 0.4 ")
    p50 = by_metric[("request/reply latency (128 B)", "p50 µs")]
    assert p50[goal_col].startswith("≤ 1.5 ")


@pytest.mark.timeout(600)
def test_self_check_measures_the_generator_against_the_sink(tmp_path: Path) -> None:
    report, log = run_bench(tmp_path, "--self-check")
    check_table(report, catalogue(quick(), selfcheck=True), "generator ceiling")
    assert "FAILED" not in log


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


@pytest.mark.timeout(300)
def test_profile_runs_pynatsd_under_cprofile_and_prints_top_functions(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--profile", "pub", "--profiler", "cprofile",
                           "--duration", "1", "--top", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=270,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert re.search(r"^\[pub\] under cprofile: msgs/s in [0-9,]+ ", proc.stdout, re.M)
    assert "== top 5 by own time (tottime) ==" in proc.stdout
    assert "== top 5 by cumulative time ==" in proc.stdout
    assert "cli.py" in proc.stdout  # pynatsd's own frames were recorded
