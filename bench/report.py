"""Turning runs into numbers: medians over rounds, the pynatsd / nats-server ratio per metric,
server CPU per operation, and the markdown table that ``make bench`` prints."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.scenarios import Metric, Scenario


@dataclass
class Runs:
    """All runs of one scenario against one implementation."""
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, result: dict[str, float]) -> None:
        for k, v in result.items():
            self.values.setdefault(k, []).append(v)

    def median(self, key: str) -> float | None:
        vals = self.values.get(key)
        return statistics.median(vals) if vals else None


Results = dict[str, dict[str, Runs]]   # scenario name -> implementation label -> runs


def fmt_value(m: Metric, v: float | None) -> str:
    if v is None:
        return "FAIL"
    x = v * m.scale
    if m.digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{m.digits}f}"


def fmt_cpu(v: float | None) -> str:
    if v is None:
        return ""
    us = v * 1e6
    return f"{us:.3f}" if us < 1 else f"{us:.2f}" if us < 100 else f"{us:,.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def goal_text(m: Metric, r: float | None) -> str:
    if m.goal is None:
        return ""
    want = f"{'≥' if m.higher_better else '≤'} {m.goal:g}"
    if r is None:
        return want
    met = r >= m.goal if m.higher_better else r <= m.goal
    return f"{want} {'met' if met else '**missed**'}"


def table(scens: list[Scenario], results: Results, labels: list[str], *, goals: bool = True) -> str:
    """One row per metric; with two implementations, the ratio first/second and the goal."""
    two = len(labels) == 2
    head = ["Scenario", "Metric", *labels]
    if two:
        head += [f"ratio {labels[0]} / {labels[1]}"] + (["goal"] if goals else [])
    head += [f"server CPU µs/op ({lab})" for lab in labels if lab != "generator ceiling"]
    head += ["generator CPU µs/op", "busiest generator process"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for sc in scens:
        per = results.get(sc.name)
        if per is None:
            continue
        for i, m in enumerate(sc.metrics):
            meds = [per[lab].median(m.key) if lab in per else None for lab in labels]
            row = [sc.title if i == 0 else "", m.label, *(fmt_value(m, v) for v in meds)]
            if two:
                r = ratio(meds[0], meds[1])
                row.append("" if r is None else f"{r:.2f}")
                if goals:
                    row.append(goal_text(m, r))
            for lab in labels:
                if lab == "generator ceiling":
                    continue
                cpu = per[lab].median("cpu") if (lab in per and i == 0 and sc.cpu_unit) else None
                row.append(f"{fmt_cpu(cpu)} /{sc.cpu_unit}" if cpu is not None else "")
            gen = [v for lab in labels if lab in per for v in per[lab].values.get("gen_cpu", [])]
            row.append(f"{fmt_cpu(statistics.median(gen))} /{sc.cpu_unit}" if gen and i == 0 else "")
            # Its share of one core: near 100% would mean the generator, not the server, is the limit.
            peaks = [v for lab in labels if lab in per for v in per[lab].values.get("gen_peak", [])]
            row.append(f"{100 * max(peaks):.0f}% of a core" if peaks and i == 0 else "")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def errors_text(scens: list[Scenario], results: Results) -> str:
    out = []
    for sc in scens:
        for lab, runs in results.get(sc.name, {}).items():
            for e in runs.errors:
                first = e.strip().splitlines()[0] if e.strip() else "(no message)"
                out.append(f"- {sc.name} / {lab}: {first}")
    return "\n".join(out)


def runs_text(scens: list[Scenario], results: Results, labels: list[str]) -> str:
    """Every run's value of each scenario's first metric, to show the spread behind a median."""
    out = []
    for sc in scens:
        per = results.get(sc.name)
        if not per:
            continue
        m = sc.metrics[0]
        parts = []
        for lab in labels:
            if lab in per:
                vals = per[lab].values.get(m.key, [])
                parts.append(f"{lab}: " + ", ".join(fmt_value(m, v) for v in vals))
        out.append(f"- {sc.name} ({m.label}): " + "; ".join(parts))
    return "\n".join(out)
