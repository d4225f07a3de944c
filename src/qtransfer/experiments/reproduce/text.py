"""Text shared by the experiments' report sections: paired differences and tables over seeds."""
from __future__ import annotations

from qtransfer.experiments.stats import describe, paired_difference
from qtransfer.report.tables import paired_text, pm

PAIRED_INTRO = "mean, 95% t-interval, sign-flip p, d_z, n pairs (better / tie / worse)"


def seeds_table(rows: list[tuple[str, list[float], str]], header: str) -> str:
    """A markdown table: per row the test accuracy over seeds, min, max and the paper's figure."""
    lines = [f"| {header} | test accuracy (mean ± std over seeds) | min | max | paper |", "|---|---|---|---|---|"]
    for label, acc, paper in rows:
        d = describe(acc)
        lines.append(f"| {label} | {pm(d)} | {d['min']:.4f} | {d['max']:.4f} | {paper} |")
    return "\n".join(lines)


def paired(a: list[float], b: list[float]) -> str:
    """Paired difference a − b over seeds: mean, t-interval, sign-flip p, d_z, n and wins / ties / losses."""
    return paired_text(paired_difference(a, b))
