"""``python -m bench``: run the benchmark scenarios against pynatsd and nats-server (fresh
servers, alternating A B A B), print medians, ratios and server CPU per operation as a
markdown table; ``--self-check`` measures the generator against a byte sink instead;
``--profile SCENARIO`` runs one scenario against pynatsd under a profiler."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from bench.certs import make_certs
from bench.load import LoadError
from bench.profiling import cprofile_summary, find_py_spy, pyspy_summary
from bench.report import Results, Runs, errors_text, runs_text, table
from bench.scenarios import Env, Scenario, Settings, machine_description, scenarios, selfcheck_scenarios
from bench.servers import ServerError, nats_server_binary, precompile_sources


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 round, 1 s per run, small memory counts (proves it works, not speed)")
    ap.add_argument("--scenarios", default="",
                    help="comma-separated scenario names (default: all); see --list")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--payload", type=int, default=128, help="payload bytes (default 128)")
    ap.add_argument("--duration", type=float, default=None, help="seconds of load per run (default 5, quick 1)")
    ap.add_argument("--msgs", type=int, default=0,
                    help="publish exactly this many messages per run instead of running for --duration")
    ap.add_argument("--rounds", type=int, default=None, help="A B rounds per scenario (default 3, quick 1)")
    ap.add_argument("--impl", choices=("both", "pynatsd", "nats-server"), default="both")
    ap.add_argument("--noise", action="store_true",
                    help="nats-server against itself: the ratio column is the noise band")
    ap.add_argument("--self-check", action="store_true",
                    help="measure the generator against a trivial byte sink (its own ceiling)")
    ap.add_argument("--conn-clients", type=int, default=2, help="concurrent connecting processes (default 2)")
    ap.add_argument("--mem-conns", default=None, help="idle connection counts, e.g. 1000,10000")
    ap.add_argument("--mem-subs", type=int, default=None, help="subscriptions for the memory run (10000)")
    ap.add_argument("--out", help="also write the report (markdown) to this file")
    ap.add_argument("--json", help="write every run's raw values to this file")
    ap.add_argument("--profile", metavar="SCENARIO", help="run SCENARIO once against a profiled pynatsd")
    ap.add_argument("--profiler", choices=("auto", "cprofile", "py-spy"), default="auto",
                    help="py-spy (sampling, low overhead) when installed, else cProfile")
    ap.add_argument("--top", type=int, default=30, help="functions to show with --profile")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (server logs, certs)")
    return ap.parse_args(argv)


def make_settings(a: argparse.Namespace) -> Settings:
    s = Settings(payload=a.payload, msgs=a.msgs, conn_clients=a.conn_clients)
    s.duration = a.duration if a.duration is not None else (1.0 if a.quick else 5.0)
    if a.quick:
        s.mem_conns, s.mem_subs = (100, 1000), 1000
    if a.mem_conns:
        small, big = (int(x) for x in a.mem_conns.split(","))
        s.mem_conns = (small, big)
    if a.mem_subs:
        s.mem_subs = a.mem_subs
    if a.msgs:
        s.reqrep_max = a.msgs
    return s


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _select(all_scens: list[Scenario], names: str) -> list[Scenario]:
    if not names:
        return all_scens
    by_name = {s.name: s for s in all_scens}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in wanted]


def _summary(sc: Scenario, result: dict[str, float]) -> str:
    m = sc.metrics[0]
    v = result.get(m.key)
    return f"{m.label} {v * m.scale:,.{m.digits}f}" if v is not None else ""


def run_all(scens: list[Scenario], impls: list[tuple[str, str]], rounds: int, workdir: str,
            settings: Settings) -> Results:
    """Every scenario: ``rounds`` times each implementation in turn, a fresh server per run."""
    certs = make_certs(os.path.join(workdir, "certs"))
    results: Results = {}
    for sc in scens:
        per = results.setdefault(sc.name, {})
        for r in range(rounds):
            for label, impl in impls:
                runs = per.setdefault(label, Runs())
                env = Env(impl, workdir, certs, settings)
                t = time.monotonic()
                try:
                    res = sc.run(env)
                    runs.add(res)
                    msg = _summary(sc, res)
                except (LoadError, ServerError, OSError) as e:
                    runs.errors.append(f"round {r + 1}: {e}")
                    msg = f"FAILED: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                print(f"[{sc.name}] round {r + 1}/{rounds} {label}: {msg} ({time.monotonic() - t:.1f}s)",
                      file=sys.stderr, flush=True)
    return results


def _nats_version() -> str:
    try:
        out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, ServerError, subprocess.SubprocessError):
        return "nats-server (version unknown)"


def _pynatsd_version() -> str:
    """The commit of the pynatsd being measured, and whether its sources differ from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "pynatsd (commit unknown)"
    if not sha:
        return "pynatsd (not a git checkout)"
    return f"pynatsd {sha}" + (" with uncommitted changes in src/" if dirty else "")


def header(a: argparse.Namespace, settings: Settings, labels: list[str], rounds: int, title: str,
           compiled: str = "") -> str:
    mach = machine_description()
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()
    return "\n".join([
        f"## {title}",
        "",
        f"- date: {now}",
        f"- machine: {mach['cores']} cores ({mach['cpu']}), {mach['memory']}, Linux {mach['kernel']}, "
        f"load average before the run {load[0]:.2f}",
        f"- software: Python {platform.python_version()}, {_nats_version()}, {_pynatsd_version()}"
        + (f" ({compiled})" if compiled else ""),
        f"- settings: payload {settings.payload} B, "
        + (f"{settings.msgs:,} msgs per run" if settings.msgs else f"{settings.duration:g} s per run")
        + f", {rounds} round(s) of {' / '.join(labels)} (fresh server per run), "
        f"{settings.conn_clients} connecting processes; values are medians over rounds",
        "",
    ])


def profile_main(a: argparse.Namespace, settings: Settings, workdir: str) -> int:
    by_name = {s.name: s for s in scenarios(settings)}
    if a.profile not in by_name:
        raise SystemExit(f"unknown scenario {a.profile!r}; known: {', '.join(by_name)}")
    sc = by_name[a.profile]
    certs = make_certs(os.path.join(workdir, "certs"))
    out = os.path.join(workdir, "profile.out")
    kw: dict[str, object] = {"profile_out": out}
    spy = find_py_spy()
    profiler = a.profiler if a.profiler != "auto" else ("py-spy" if spy else "cprofile")
    if profiler == "py-spy":
        if spy is None:
            raise SystemExit("py-spy not found (pip install py-spy)")
        kw["py_spy"] = spy
    env = Env("pynatsd", workdir, certs, settings, server_kwargs=kw)
    res = sc.run(env)
    print(f"[{sc.name}] under {profiler}: {_summary(sc, res)} (profiled, so slower than real)")
    if not os.path.exists(out):
        print(f"no profile written to {out}", file=sys.stderr)
        return 1
    print(pyspy_summary(out, a.top) if profiler == "py-spy" else cprofile_summary(out, a.top))
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    settings = make_settings(a)
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    if a.list:
        for sc in scenarios(settings):
            print(f"{sc.name:10} {sc.title}")
        print("self-check:", ", ".join(s.name for s in selfcheck_scenarios(settings)))
        return 0
    _raise_nofile()
    workdir = tempfile.mkdtemp(prefix="pynatsd-bench-")
    try:
        compiled = precompile_sources()
        if a.profile:
            return profile_main(a, settings, workdir)
        if a.self_check:
            scens = _select(selfcheck_scenarios(settings), a.scenarios)
            impls = [("generator ceiling", "sink")]
            title = "Load generator self-check (against a byte sink)"
        else:
            scens = _select(scenarios(settings), a.scenarios)
            if a.noise:
                impls = [("nats-server A", "nats-server"), ("nats-server B", "nats-server")]
                title = "Noise band: nats-server against itself"
            elif a.impl == "both":
                impls = [("pynatsd", "pynatsd"), ("nats-server", "nats-server")]
                title = "pynatsd vs nats-server"
            else:
                impls = [(a.impl, a.impl)]
                title = f"{a.impl} only"
        labels = [lab for lab, _ in impls]
        head = header(a, settings, labels, rounds, title, compiled)
        results = run_all(scens, impls, rounds, workdir, settings)
        body = table(scens, results, labels, goals=not a.noise and not a.self_check)
        parts = [head, body, ""]
        if rounds > 1:
            parts += ["Every run (first metric):", runs_text(scens, results, labels), ""]
        errs = errors_text(scens, results)
        if errs:
            parts += ["Failed runs:", errs, ""]
        report = "\n".join(parts)
        print(report)
        if a.out:
            with open(a.out, "w") as f:
                f.write(report)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"title": title, "settings": vars(settings),
                           "results": {s: {lab: {"values": r.values, "errors": r.errors}
                                           for lab, r in per.items()} for s, per in results.items()}},
                          f, indent=1)
        ok = all(any(r.values for r in per.values()) and all(r.values for r in per.values())
                 for per in results.values())
        return 0 if ok else 1
    finally:
        if a.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
