"""Tables a person reads: per-epoch metrics, comparisons of heads, sweeps; numbers as 'mean ± std'."""
from __future__ import annotations

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
    for r in rows:
        lines.append(
            f"{r['epoch']:>5} {r['train_loss']:>10.4f} {r['train_acc']:>9.4f} "
            f"{r['val_loss']:>9.4f} {r['val_acc']:>8.4f} {r['epoch_s']:>6.2f}"
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


def paired_table(pairs: Sequence[dict[str, Any]]) -> str:
    """Markdown table of paired differences a − b over common seeds with bootstrap 95% intervals."""
    lines = ["| a − b | metric | seeds | mean difference | 95% bootstrap interval | a better / tie / worse |",
             "|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(
            f"| `{p['a']}` − `{p['b']}` | {p['metric']} | {p['n']} | {p['mean']:+.4f} "
            f"| [{p['ci95_low']:+.4f}, {p['ci95_high']:+.4f}] | {p['wins']} / {p['ties']} / {p['losses']} |"
        )
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
        "\"Best val acc\" is the accuracy of the epoch selected on the validation split itself, as the reference"
        + " reports it: it is biased upward. \"Final\" is the last epoch's. \"Held-out\" accuracies (when the data"
        + " has a test split, or --holdout carves one) score the selected epoch on images never used to train or select.",
        "",
        compare_table(result["heads"], result.get("metrics", ("accuracy", "balanced_accuracy"))),
        "",
    ]
    if result["paired"]:
        text += ["## Paired differences over seeds", "", paired_table(result["paired"]), ""]
    return "\n".join(text)


def sweep_markdown(result: dict[str, Any]) -> str:
    """sweep.md: accuracy per depth and per qubit count, mean ± std over seeds."""
    ax = result["axes"]
    text = [
        f"# Circuit sweep on {result['backbone']} features",
        "",
        f"Data `{result['data']}`; {result['epochs']} epochs; seeds {result['seeds']}. Accuracies are the best "
        + "epoch's, selected on the validation split itself (biased upward), and the final epoch's.",
        "",
        f"## Depth ({ax['depth']['fixed']['qubits']} qubits; depth 0 keeps only the embedding)",
        "",
        "| depth | best val acc | final val acc | trainable parameters | head training s |",
        "|---|---|---|---|---|",
    ]
    for p in ax["depth"]["quantum"]:
        text.append(f"| {p['x']} | {pm(p['best_val_acc'])} | {pm(p['final_val_acc'])} | {int(p['parameters'])} "
                    f"| {p['train_s']:.2f} |")
    for p in ax["depth"].get("classical", []):
        text.append(f"| classical head | {pm(p['best_val_acc'])} | {pm(p['final_val_acc'])} "
                    f"| {int(p['parameters'])} | {p['train_s']:.2f} |")
    text += [
        "",
        f"## Qubits (depth {ax['qubits']['fixed']['depth']}; the classical head has the same width)",
        "",
        "| qubits | quantum best val acc | quantum final | classical best val acc | classical final "
        + "| parameters (quantum / classical) | head training s (quantum / classical) |",
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
             "| head | fold | train / select / test | best epoch | selected-on inner val acc | "
             + " | ".join(f"held-out {m}" for m in metrics) + " |",
             "|---|---|---|---|---|" + "---|" * len(metrics)]
    for r in result["folds"]:
        cells = [_cell(r["held_out"][m]) for m in metrics]
        lines.append(f"| `{r['head']}` | {r['fold']} | {r['train']} / {r['select']} / {r['test']} | {r['best_epoch']} "
                     f"| {r['selected_on_inner_val_acc']:.4f} | " + " | ".join(cells) + " |")
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
