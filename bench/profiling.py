"""pynatsd under a profiler, for the speed work.

``python -m bench --profile SCENARIO`` runs one scenario against pynatsd started as
``python -m bench.profiling --out FILE -- <pynatsd args>`` (cProfile; stopped with SIGINT so the
statistics are written) or, with ``--profiler py-spy``, under ``py-spy record`` (a sampling
profiler: far less overhead, so closer to real proportions). Then it prints the top functions.
cProfile slows a Python server several times over; read its output as proportions only.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import signal
import sys
from collections import Counter


def main(argv: list[str] | None = None) -> None:
    """Entry point of the profiled server process."""
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise SystemExit("usage: python -m bench.profiling --out FILE -- <pynatsd arguments>")
    cut = argv.index("--")
    ap = argparse.ArgumentParser(prog="python -m bench.profiling")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv[:cut])
    server_args = argv[cut + 1:]
    # Until pynatsd installs its own handlers, a SIGTERM should still end in dumped statistics.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from pynatsd import cli

    prof = cProfile.Profile()
    prof.enable()
    try:
        # cli.main() ends a server process with os._exit() (no teardown), which would skip
        # writing the statistics; cli.run() is the same minus that exit.
        run = getattr(cli, "run", None)
        if run is not None:
            run(server_args, sys.stdout, sys.stderr)
        else:
            cli.main(server_args)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        prof.disable()
        prof.dump_stats(a.out)


def find_py_spy() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return here if os.path.exists(here) else shutil.which("py-spy")


def cprofile_summary(path: str, top: int) -> str:
    out = io.StringIO()
    st = pstats.Stats(path, stream=out)
    st.strip_dirs()
    out.write(f"== top {top} by own time (tottime) ==\n")
    st.sort_stats("tottime").print_stats(top)
    out.write(f"== top {top} by cumulative time ==\n")
    st.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def pyspy_summary(path: str, top: int) -> str:
    """Summarise py-spy's raw (collapsed stack) output: own and inclusive samples per function."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            count = int(n)
            frames = stack.split(";")
            total += count
            own[frames[-1]] += count
            for fr in set(frames):
                incl[fr] += count
    if not total:
        return "py-spy recorded no samples\n"
    lines = [f"{total} samples", f"== top {top} by own samples =="]
    lines += [f"{100 * c / total:6.2f}%  {fr}" for fr, c in own.most_common(top)]
    lines.append(f"== top {top} by inclusive samples ==")
    lines += [f"{100 * c / total:6.2f}%  {fr}" for fr, c in incl.most_common(top)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
