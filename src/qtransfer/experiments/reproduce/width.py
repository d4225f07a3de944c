"""Does width close the bottleneck? The dressed quantum circuit at 4 to 16 qubits, without its entanglement, and
its classical twin at the same widths, on digits (10 classes through `width` numbers): `qtransfer reproduce width`."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from qtransfer.config import TrainConfig
from qtransfer.data.digits import write_digits
from qtransfer.experiments.cv import CVSettings, cross_validate
from qtransfer.experiments.reproduce.registry import (
    ReproduceOptions,
    Reproduction,
    register_experiment,
)
from qtransfer.experiments.stats import corrected_resampled_t
from qtransfer.report import figures

WIDTHS = (4, 8, 12, 16)
SEEDS = 3
EPOCHS = 10  # a 16-qubit head takes ~20 ms a step here; 10 epochs x 3 seeds x 5 folds keep the study near 30 min
STEP_SIZE = 4
FOLDS = 5
KINDS = {"quantum": "quantum:qubits={w}", "no entanglement": "quantum:qubits={w},entangle=false",
         "classical twin": "classical:qubits={w}"}


def plot(table: dict[str, dict[int, dict[str, Any]]], path: Path) -> None:
    """Held-out accuracy against width, per kind of head: mean and 95% interval over folds."""
    fig, ax = figures.subplots(figsize=(6.4, 4.4))
    for (kind, rows), colour in zip(table.items(), figures.colors()):
        widths = sorted(rows)
        means = [rows[w]["mean"] for w in widths]
        low = [rows[w]["mean"] - rows[w]["ci95"][0] for w in widths]
        high = [rows[w]["ci95"][1] - rows[w]["mean"] for w in widths]
        ax.errorbar(widths, means, yerr=[low, high], marker="o", capsize=3, label=kind, color=colour)
    ax.set_xticks(list(WIDTHS))
    ax.set_xlabel("width (qubits, or hidden units of the twin)")
    ax.set_ylabel("held-out accuracy (digits, 10 classes)")
    ax.set_title("Does width close the bottleneck?")
    ax.grid(alpha=0.3)
    ax.legend()
    figures.save(fig, path)


@register_experiment("width")
def _width(options: ReproduceOptions, run_dir: Path) -> Reproduction:
    run_dir.mkdir(parents=True, exist_ok=True)
    seeds = options.seeds if options.seeds is not None else list(range(42, 42 + SEEDS))
    epochs = options.epochs or EPOCHS
    base = TrainConfig(data=str(write_digits(run_dir / "data")),
                       backbone=(options.backbones or ["efficientnet_lite0"])[0], epochs=epochs,
                       step_size=min(STEP_SIZE, epochs), cache_dir=options.cache_dir,
                       device=options.device, num_workers=options.num_workers, out=str(run_dir))
    heads = [spec.format(w=w) for w in WIDTHS for spec in KINDS.values()]
    started = time.perf_counter()
    _, result = cross_validate(CVSettings(replace(base, name="width"), heads=heads, folds=FOLDS, seeds=seeds,
                                          metrics=["accuracy"]), progress=options.progress)
    table: dict[str, dict[int, dict[str, Any]]] = {kind: {} for kind in KINDS}
    tests = []
    first = result["folds"][0]
    for w in WIDTHS:
        per = {kind: result["per_fold_accuracy"][spec.format(w=w)] for kind, spec in KINDS.items()}
        for kind, spec in KINDS.items():
            table[kind][w] = result["summary"][spec.format(w=w)]["held_out_accuracy"]
            table[kind][w]["train_s"] = sum(r["train_s"] for r in result["folds"] if r["head"] == spec.format(w=w))
        for other in ("no entanglement", "classical twin"):
            d = [a - b for a, b in zip(per["quantum"], per[other])]
            tests.append({"width": w, "against": other, "mean": sum(d) / len(d),
                          **corrected_resampled_t(d, first["train"] + first["select"], first["test"])})
    figure = run_dir / "width.png"
    plot(table, figure)
    wall = time.perf_counter() - started
    lines = [("| width | quantum | no entanglement | classical twin | quantum − no entanglement (corrected 95%) "
             "| quantum − twin (corrected 95%) | quantum head s |"), "|---|---|---|---|---|---|---|"]
    for w in WIDTHS:
        cells = [f"{table[k][w]['mean']:.4f} ± {table[k][w]['std']:.4f}" for k in KINDS]
        diffs = [next(t for t in tests if t["width"] == w and t["against"] == o) for o in ("no entanglement",
                                                                                          "classical twin")]
        cells += [f"{t['mean']:+.4f} [{t['low']:+.4f}, {t['high']:+.4f}]" for t in diffs]
        lines.append(f"| {w} | " + " | ".join(cells) + f" | {table['quantum'][w]['train_s']:.0f} |")
    body = f"""
Digits (scikit-learn's handwritten digits as 32×32 images, 1,437 pooled, 10 classes) on {base.backbone} features:
the dressed quantum head at {', '.join(map(str, WIDTHS))} qubits (the tutorial's circuit, depth {base.depth}), the
same circuit with its CNOTs removed, and the classical twin of the same width. {FOLDS}-fold cross-validation, each
fold's score the mean over {len(seeds)} seeds ({', '.join(map(str, seeds))}); {epochs} epochs with StepLR
({base.step_size}, {base.gamma}), the reference's other settings, untuned (the benchmark tunes; here the width is
the question). Mean ± std over folds; differences per fold with Nadeau and Bengio's corrected interval. Wall time
{wall / 60:.1f} min.

{chr(10).join(lines)}
"""
    return Reproduction("width", "Width: 4 to 16 qubits against the classical twin, with and without entanglement",
                        body, [figure], run_dir, 0.0, {"seeds": seeds, "table": table, "tests": tests,
                                                       "wall_s": wall})
