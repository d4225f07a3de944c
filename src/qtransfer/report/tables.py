"""Tables a person reads: per-epoch metrics, comparisons of heads, sweeps; numbers as 'mean ± std'."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def pm(stats: dict[str, float], digits: int = 4) -> str:
    """'0.9412 ± 0.0123' from a describe() dict (the mean alone for one value)."""
    if stats["n"] < 2:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"



def epoch_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of the per-epoch metrics."""
    head = f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'val loss':>9} {'val acc':>8} {'s':>6}"
    lines = [head, "-" * len(head)]
    lines.extend(
        f"{r['epoch']:>5} {r['train_loss']:>10.4f} {r['train_acc']:>9.4f} "
        f"{r['val_loss']:>9.4f} {r['val_acc']:>8.4f} {r['epoch_s']:>6.2f}"
        for r in rows
    )
    return "\n".join(lines)


HELD_OUT_COLUMNS = {"accuracy": ("held_out_acc", "held-out test acc"),
                    "balanced_accuracy": ("held_out_balanced_acc", "held-out balanced acc"),
                    "roc_auc": ("held_out_roc_auc", "held-out ROC-AUC")}


def compare_table(heads: dict[str, dict[str, Any]], metrics: Sequence[str] = ("accuracy", "balanced_accuracy")) -> str:
    """Markdown table: one row per head, statistics over its seeds; the chosen held-out metrics when there was a
    test split, and the gap between selected-on and held-out accuracy."""
    held = [m for m in metrics if any(HELD_OUT_COLUMNS[m][0] in h for h in heads.values())]
    gap = any("held_out_acc" in h for h in heads.values())
    extra = "".join(f" | {HELD_OUT_COLUMNS[m][1]}" for m in held) + (" | gap (selected − held-out)" if gap else "")
    lines = [
        "| head | seeds | best val acc (selected on val) | min | max | final val acc | best val loss"
        + extra + " | trainable parameters | head training s |",
        "|---|---|---|---|---|---|---|" + "---|" * (len(held) + gap) + "---|---|",
    ]
    for label, h in heads.items():
        acc = h["best_val_acc"]
        cells = "".join(f" | {pm(h[HELD_OUT_COLUMNS[m][0]])}" for m in held)
        if gap:
            cells += f" | {acc['mean'] - h['held_out_acc']['mean']:+.4f}"
        lines.append(
            f"| `{label}` | {acc['n']} | {pm(acc)} | {acc['min']:.4f} | {acc['max']:.4f} "
            f"| {pm(h['final_val_acc'])} | {pm(h['best_val_loss'])}{cells} | {int(h['parameters']['mean'])} "
            f"| {h['train_s']['mean']:.2f} |"
        )
    return "\n".join(lines)


PAIRED_NOTE = ("n: paired observations (the same seeds on both sides). Interval: Student's t, 95%, of the mean "
               "difference. p: two-sided sign-flip permutation test of the mean difference, exact over all 2^n sign "
               "flips (MC: Monte-Carlo over the stated number of random flips). d_z: mean / standard deviation of "
               "the differences. A percentile bootstrap interval is shown only where n is large enough for one.")


def interval(low: float, high: float) -> str:
    """'[-0.0100, +0.0300]', or '–' when undefined (one observation)."""
    if math.isnan(low) or math.isnan(high):
        return "–"
    return f"[{low:+.4f}, {high:+.4f}]"


def p_value(p: dict[str, Any]) -> str:
    """The sign-flip p-value of a paired_difference() dict, with its method when not exact."""
    text = f"{p['p_sign_flip']:.4f}"
    return text if p["p_method"] == "exact" else f"{text} (MC, {p['p_resamples']:,} flips)"


def has_bootstrap(pairs: Sequence[dict[str, Any]]) -> bool:
    """Whether any of the paired differences has a bootstrap interval (enough observations)."""
    return any(p.get("bootstrap_ci95") for p in pairs)


def paired_header(bootstrap: bool = False) -> list[str]:
    """Column titles of paired_cells."""
    return ["n", "mean difference", "95% t-interval", "sign-flip p", "d_z"] + (
        ["95% bootstrap interval"] if bootstrap else [])


def paired_cells(p: dict[str, Any], bootstrap: bool = False) -> list[str]:
    """n, mean, t-interval, sign-flip p, d_z (and the bootstrap interval, '–' where n is too small for one)."""
    cells = [str(p["n"]), f"{p['mean']:+.4f}", interval(p["ci95_low"], p["ci95_high"]), p_value(p),
             f"{p['d_z']:+.2f}" if not math.isnan(p["d_z"]) else "–"]
    if bootstrap:
        cells.append(interval(*p["bootstrap_ci95"]) if p.get("bootstrap_ci95") else f"– (n = {p['n']})")
    return cells


def paired_text(p: dict[str, Any]) -> str:
    """One line: mean difference, t-interval, sign-flip p, d_z, n, better / tie / worse, and the bootstrap
    interval when there is one."""
    boot = f", 95% bootstrap {interval(*p['bootstrap_ci95'])}" if p.get("bootstrap_ci95") else ""
    d_z = f"{p['d_z']:+.2f}" if not math.isnan(p["d_z"]) else "–"
    return (f"{p['mean']:+.4f}, 95% t-interval {interval(p['ci95_low'], p['ci95_high'])}, sign-flip p = "
            f"{p_value(p)}, d_z = {d_z}, n = {p['n']}{boot} ({p['wins']} / {p['ties']} / {p['losses']})")


def paired_table(pairs: Sequence[dict[str, Any]]) -> str:
    """Markdown table of paired differences a − b over common seeds: n, mean, t-interval, sign-flip p, d_z,
    wins; a bootstrap column when some pair has enough seeds for one."""
    boot = has_bootstrap(pairs)
    titles = ["a − b", "metric", *paired_header(boot), "a better / tie / worse"]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for p in pairs:
        cells = [f"`{p['a']}` − `{p['b']}`", p["metric"], *paired_cells(p, boot),
                 f"{p['wins']} / {p['ties']} / {p['losses']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_markdown(result: dict[str, Any]) -> str:
    """compare.md: the settings, the per-head table and the paired differences."""
    counts = result["counts"]
    text = [
        f"# Comparison of heads on {result['backbone']} features",
        "",
        f"Data `{result['data']}` ({counts['train']} train / {counts['val']} val images, classes "
        f"{', '.join(result['classes'])}); {result['epochs']} epochs; seeds {result['seeds']}"
        + (f"; {result['augment_views']} augmented views per training image" if result["augment_views"] else "")
        + ".",
        "",
        (
            "\"Best val acc\" is the accuracy of the epoch selected on the validation split itself, as the reference "
            "reports it: it is biased upward. \"Final\" is the last epoch's. \"Held-out\" accuracies (when the data "
            "has a test split, or --holdout carves one) score the selected epoch on images never used to train or "
            "select."
        ),
        "",
        compare_table(result["heads"], result.get("metrics", ("accuracy", "balanced_accuracy"))),
        "",
    ]
    if result["paired"]:
        text += ["## Paired differences over seeds", "", paired_table(result["paired"]), "", PAIRED_NOTE, ""]
    return "\n".join(text)


def sweep_markdown(result: dict[str, Any]) -> str:
    """sweep.md: accuracy per depth and per qubit count, mean ± std over seeds."""
    ax = result["axes"]
    text = [
        f"# Circuit sweep on {result['backbone']} features",
        "",
        (
            f"Data `{result['data']}`; {result['epochs']} epochs; seeds {result['seeds']}. Accuracies are the best "
            "epoch's, selected on the validation split itself (biased upward), and the final epoch's."
        ),
        "",
        f"## Depth ({ax['depth']['fixed']['qubits']} qubits; depth 0 keeps only the embedding)",
        "",
        "| depth | best val acc | final val acc | trainable parameters | head training s |",
        "|---|---|---|---|---|",
    ]
    text.extend(f"| {p['x']} | {pm(p['best_val_acc'])} | {pm(p['final_val_acc'])} | {int(p['parameters'])} "
                f"| {p['train_s']:.2f} |" for p in ax["depth"]["quantum"])
    text.extend(f"| classical head | {pm(p['best_val_acc'])} | {pm(p['final_val_acc'])} "
                f"| {int(p['parameters'])} | {p['train_s']:.2f} |" for p in ax["depth"].get("classical", []))
    text += [
        "",
        f"## Qubits (depth {ax['qubits']['fixed']['depth']}; the classical head has the same width)",
        "",
        (
            "| qubits | quantum best val acc | quantum final | classical best val acc | classical final "
            "| parameters (quantum / classical) | head training s (quantum / classical) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    classical = {p["x"]: p for p in ax["qubits"].get("classical", [])}
    for p in ax["qubits"]["quantum"]:
        c = classical.get(p["x"])
        cells = (f"{pm(c['best_val_acc'])} | {pm(c['final_val_acc'])}", f"{int(c['parameters'])}",
                 f"{c['train_s']:.2f}") if c else ("– | –", "–", "–")
        text.append(f"| {p['x']} | {pm(p['best_val_acc'])} | {pm(p['final_val_acc'])} | {cells[0]} "
                    f"| {int(p['parameters'])} / {cells[1]} | {p['train_s']:.2f} / {cells[2]} |")
    return "\n".join(text) + "\n"


def cv_markdown(result: dict[str, Any], metrics: list[str]) -> str:
    """cv.md: one row per fold, then mean ± std and 95% intervals per head."""
    s = result["settings"]
    lines = [f"# {s['folds']}-fold cross-validation on {result['backbone']} features", "",
             (f"{result['samples']} images pooled from {result['pooled']}, stratified folds (seed "
             f"{s['config']['seed']}); in each fold {int(s['inner_fraction'] * 100)}% of the rest selects the epoch "
             "(selected-on) and the fold itself is scored once (held-out)."), "",
             "| head | fold | seed | train / select / test | best epoch | selected-on inner val acc | "
             + " | ".join(f"held-out {m}" for m in metrics) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(metrics)]
    for r in result["folds"]:
        cells = [_cell(r["held_out"][m]) for m in metrics]
        lines.append(f"| `{r['head']}` | {r['fold']} | {r.get('seed', s['config']['seed'])} | {r['train']} / "
                     f"{r['select']} / {r['test']} | {r['best_epoch']} | {r['selected_on_inner_val_acc']:.4f} | "
                     + " | ".join(cells) + " |")
    seeds = result.get("seeds", [s["config"]["seed"]])
    if len(seeds) > 1:
        lines += ["", (f"Each head trained with {len(seeds)} seeds ({', '.join(map(str, seeds))}) on every fold; "
                       f"below, the seeds are averaged within a fold, and mean, std and interval are over the "
                       f"{s['folds']} folds.")]
    lines += ["", "| head | selected-on inner val acc | held-out accuracy (mean ± std) | 95% interval (t) | gap |",
              "|---|---|---|---|---|"]
    for head, h in result["summary"].items():
        sel, acc = h["selected_on_inner_val_acc"], h.get("held_out_accuracy")
        if acc:
            lines.append(f"| `{head}` | {pm(sel)} | {pm(acc)} "
                         f"| [{acc['ci95'][0]:.4f}, {acc['ci95'][1]:.4f}] | {sel['mean'] - acc['mean']:+.4f} |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.3f}" for k, v in value.items())
    return str(value)


def _p(p: float) -> str:
    if math.isnan(p):
        return "–"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _number(x: float, sign: bool = False) -> str:
    if math.isnan(x):
        return "–"
    return f"{x:+.2f}" if sign else f"{x:.2f}"


def scorecard_markdown(card: dict[str, Any], title: str, level: int = 2) -> str:
    """A scorecard() as one Markdown table (every head against the reference, a verdict each) under a heading of
    `level`, a note stating the tests, margin, α, verdict rule, n and seeds, and the Friedman test with the average
    ranks and Nemenyi's CD."""
    ref, alpha, margin = card["reference"], card["alpha"], card["margin"]
    lines = [f"{'#' * level} {title}", "",
             (f"| head | mean ± sd | 95% CI | Δ vs `{ref}` | corrected 95% CI of Δ | p | Holm p | TOST p (Holm) "
              "| verdict | d_z | n |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in card["rows"]:
        spread = f"{r['mean']:.4f} ± {r['sd']:.4f}" if not math.isnan(r["sd"]) else f"{r['mean']:.4f}"
        low, high = r["ci95"]
        cells = [f"`{r['head']}`", spread, "–" if math.isnan(low) else f"[{low:.4f}, {high:.4f}]"]
        d = r["delta"]
        if d is None:
            cells += ["(reference)", "–", "–", "–", "–", "–", "–"]
        else:
            cells += [f"{d['mean']:+.4f}", interval(d["low"], d["high"]), _p(d["p"]), _p(d["p_holm"]),
                      _p(d["tost_p_holm"]), d["verdict"], _number(d["d_z"], sign=True)]
        lines.append("| " + " | ".join([*cells, str(r["n"])]) + " |")
    folds, seeds = card["folds"], card["seeds"]
    tost_level = round(100 * (1 - 2 * alpha))
    lines += ["", (
        f"n = {folds} outer folds; each fold's score is the mean over {seeds} seed{'s' if seeds != 1 else ''} "
        f"trained on that fold. 95% CI: Student's t over the folds. Δ = head − `{ref}` per fold; its interval and p "
        f"are Nadeau and Bengio's corrected resampled t-test (variance × (1/n + n_test/n_train), n_test = "
        f"{card['n_test']}, n_train = {card['n_train']}, df = n − 1), two-sided. TOST: two one-sided corrected "
        f"t-tests that Δ lies within ±{margin:g} (equivalent when the corrected {tost_level}% interval lies inside "
        "it). "
        f"Holm: Holm-Bonferroni over this table's {sum(r['delta'] is not None for r in card['rows'])} difference "
        f"p-values, and separately over its TOST p-values. Verdict at α = {alpha:g}: equivalent when the Holm TOST "
        "p < α (even if the difference is also significant: it lies within the margin); else better / worse by the "
        "sign of Δ when the Holm p < α; else inconclusive. d_z: mean / sd of the per-fold differences.")]
    f = card.get("friedman")
    if f:
        ranks = sorted(f["average_ranks"].items(), key=lambda kv: kv[1])
        close = [f"`{a}` – `{b}` ({f['nemenyi_p'][a][b]:.3f})" for i, (a, _) in enumerate(ranks)
                 for b, _ in ranks[i + 1:] if f["nemenyi_p"][a][b] < f["alpha"]]
        lines += ["", (
            f"Friedman test over {f['blocks']} blocks × {len(f['heads'])} heads: χ² = {_number(f['statistic'])}, "
            f"p = {_p(f['p'])}. Average ranks (1 = best, ties averaged): "
            + ", ".join(f"`{h}` {r:.2f}" for h, r in ranks)
            + f". Nemenyi critical difference at α = {f['alpha']:g}: CD = {f['cd']:.2f} (Demšar 2006); "
            + ("pairs with Nemenyi p < α: " + ", ".join(close) + "." if close
               else "no pair differs at this α (Nemenyi).")
        )]
    return "\n".join(lines) + "\n"
