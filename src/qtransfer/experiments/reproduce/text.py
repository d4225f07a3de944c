"""Text shared by the experiments' report sections: intervals and tables over seeds."""
from __future__ import annotations

from typing import Any

from qtransfer.experiments.stats import describe, paired_difference
from qtransfer.report.tables import pm


def ci(p: dict[str, Any]) -> str:
    """'+0.0123 [-0.0100, +0.0300]' from a paired_difference() dict."""
    return f"{p['mean']:+.4f} [{p['ci95_low']:+.4f}, {p['ci95_high']:+.4f}]"


def seeds_table(rows: list[tuple[str, list[float], str]], header: str) -> str:
    """A markdown table: per row the test accuracy over seeds, min, max and the paper's figure."""
    lines = [f"| {header} | test accuracy (mean ± std over seeds) | min | max | paper |", "|---|---|---|---|---|"]
    for label, acc, paper in rows:
        d = describe(acc)
        lines.append(f"| {label} | {pm(d)} | {d['min']:.4f} | {d['max']:.4f} | {paper} |")
    return "\n".join(lines)


def paired(a: list[float], b: list[float]) -> str:
    """Paired difference a − b over seeds with its interval and wins / ties / losses."""
    p = paired_difference(a, b)
    return f"{p['mean']:+.4f} [{p['ci95_low']:+.4f}, {p['ci95_high']:+.4f}] ({p['wins']} / {p['ties']} / {p['losses']})"
