"""The field's benchmarking protocol (Bowles, Ahmed & Schuld 2024; Demšar 2006): every head, quantum, control and
classical, searched alike by inner cross-validation, scored on held-out folds over many seeds, and judged by
corrected tests, equivalence within a margin and ranks: `qtransfer reproduce benchmark`."""
from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from qtransfer.config import TrainConfig
from qtransfer.data.cifar import cifar_pair_folder
from qtransfer.data.digits import write_digits
from qtransfer.errors import InputError
from qtransfer.experiments.cv import CVSettings, cross_validate
from qtransfer.experiments.reproduce.registry import (
    ReproduceOptions,
    Reproduction,
    register_experiment,
)
from qtransfer.experiments.stats import friedman_nemenyi
from qtransfer.models.search import SEARCH_SIZE, search_space
from qtransfer.report import figures
from qtransfer.report.tables import scorecard_markdown

# The dressed circuit first (every row of a scorecard is against it), its two controls (no entanglement; a
# classical model of the same Fourier spectrum), its same-shape classical twin, a Linear layer, the RBF SVM on
# the circuit's 4 principal components, and three tuned scikit-learn models on all features.
HEADS = ("quantum", "quantum:entangle=false", "fourier", "classical", "linear", "svm:pca=4", "logreg", "svm", "mlp")
FOLDS = 5
SEEDS = 20
CIFAR_PAIRS = {"dogs/cats": ("dog", "cat"), "planes/cars": ("airplane", "automobile")}


def datasets(options: ReproduceOptions, run_dir: Path) -> dict[str, str]:
    """Dataset name -> image folder: ants/bees (--data), digits (written), and the paper's CIFAR-10 pairs when
    --cifar gives a CIFAR-10 root."""
    if not options.data:
        raise InputError("reproduce benchmark needs --data DIR, the hymenoptera_data folder "
                         "(`qtransfer data hymenoptera --dest DIR` downloads it)")
    found = {"ants/bees": options.data, "digits": str(write_digits(run_dir / "data"))}
    if options.cifar:
        for name, classes in CIFAR_PAIRS.items():
            found[name] = str(cifar_pair_folder(Path(options.cifar), classes, run_dir / "data"))
    return found


def run_dataset(name: str, data: str, base: TrainConfig, heads: tuple[str, ...], seeds: list[int],
                run_dir: Path, progress: bool) -> dict[str, Any]:
    """`qtransfer cv --tune` of every head on one dataset; its result with the wall time."""
    started = time.perf_counter()
    slug = name.replace("/", "_")
    settings = CVSettings(replace(base, data=data, name=f"benchmark-{slug}"), heads=list(heads), folds=FOLDS,
                          seeds=seeds, tune=True, tune_seeds=1, metrics=["accuracy", "balanced_accuracy"])
    cv_dir, result = cross_validate(settings, progress=progress)
    if (cv_dir / "cv_ranks.png").exists():
        shutil.copy(cv_dir / "cv_ranks.png", run_dir / f"benchmark_{slug}_ranks.png")
    return {**result, "cv_dir": str(cv_dir), "wall_s": time.perf_counter() - started}


def chosen_table(result: dict[str, Any], heads: tuple[str, ...]) -> str:
    """Per head: the configurations its inner CV chose, with how many of the outer folds chose each."""
    lines = ["| head | searched (8 configurations) | chosen (folds) |", "|---|---|---|"]
    for head in heads:
        picks = Counter(t["chosen"] for t in result["tuning"] if t["head"] == head)
        space = search_space(head.partition(":")[0])
        searched = " × ".join(f"{k} {{{', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vs)}}}"
                              for k, vs in space.items())
        lines.append(f"| `{head}` | {searched} | {'; '.join(f'{c} ({n})' for c, n in picks.most_common())} |")
    return "\n".join(lines)


def across(results: dict[str, dict[str, Any]], heads: tuple[str, ...]) -> dict[str, Any]:
    """Ranks over every (dataset, fold) block, and over datasets when there are three or more."""
    per_block = {h: [v for r in results.values() for v in r["per_fold_accuracy"][h]] for h in heads}
    out: dict[str, Any] = {"blocks": friedman_nemenyi(per_block)}
    if len(results) >= 3:
        out["datasets"] = friedman_nemenyi({h: [r["summary"][h]["held_out_accuracy"]["mean"] for r in results.values()]
                                            for h in heads})
    return out


def plot_accuracy(results: dict[str, dict[str, Any]], heads: tuple[str, ...], path: Path) -> None:
    """Per dataset: each head's held-out accuracy per fold (seed means) with its mean and 95% t-interval."""
    fig, axes = figures.subplots(1, len(results), figsize=(5.5 * len(results), 4.6), squeeze=False)
    palette = figures.colors()
    for ax, (name, r) in zip(axes[0], results.items()):
        rows = {row["head"]: row for row in r["scorecard"]["rows"]}
        for i, head in enumerate(heads):
            colour = palette[0] if head.startswith("quantum") else palette[2] if head == "fourier" else palette[1]
            values = r["per_fold_accuracy"][head]
            ax.scatter([i - 0.15] * len(values), values, s=12, alpha=0.6, color=colour)
            low, high = rows[head]["ci95"]
            mean = rows[head]["mean"]
            ax.errorbar(i + 0.1, mean, yerr=[[mean - low], [high - mean]], fmt="o", color="black", capsize=3)
        ax.set_xticks(range(len(heads)), heads, rotation=40, ha="right")
        ax.set_title(f"{name}: folds (dots), mean and 95% interval")
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3, axis="y")
    figures.save(fig, path)


@register_experiment("benchmark")
def _benchmark(options: ReproduceOptions, run_dir: Path) -> Reproduction:
    run_dir.mkdir(parents=True, exist_ok=True)
    heads = tuple(options.heads or HEADS)
    if len(heads) < 3 or heads[0].partition(":")[0] != "quantum":
        raise InputError(f"reproduce benchmark scores heads against a quantum head given first, and ranks three or "
                         f"more; --heads {' '.join(heads)} does not")
    seeds = options.seeds if options.seeds is not None else list(range(42, 42 + SEEDS))
    base = TrainConfig(backbone=(options.backbones or ["efficientnet_lite0"])[0], epochs=options.epochs or 30,
                       cache_dir=options.cache_dir, device=options.device, num_workers=options.num_workers,
                       out=str(run_dir))
    results = {}
    for name, data in datasets(options, run_dir).items():
        results[name] = run_dataset(name, data, base, heads, seeds, run_dir, options.progress)
    pooled = across(results, heads)
    accuracy = run_dir / "benchmark_accuracy.png"
    plot_accuracy(results, heads, accuracy)
    ranks = run_dir / "benchmark_ranks_all.png"
    figures.plot_critical_difference(pooled["blocks"]["average_ranks"], pooled["blocks"]["nemenyi_p"], ranks,
                                     f"held-out accuracy, {len(results)} datasets × {FOLDS} folds",
                                     cd=pooled["blocks"]["cd"])
    body = _body(results, pooled, heads, seeds, base)
    figs = [accuracy, *(run_dir / f"benchmark_{n.replace('/', '_')}_ranks.png" for n in results), ranks]
    return Reproduction("benchmark", "The benchmarking protocol: every head tuned alike, controls, equivalence",
                        body, figs, run_dir, 0.0,
                        {"seeds": seeds, "heads": list(heads), "across": pooled,
                         "datasets": {n: {k: r[k] for k in ("scorecard", "tuning", "summary", "wall_s", "cv_dir",
                                                             "samples", "per_fold_accuracy")}
                                      for n, r in results.items()}})


def _body(results: dict[str, dict[str, Any]], pooled: dict[str, Any], heads: tuple[str, ...], seeds: list[int],
          base: TrainConfig) -> str:
    sections = []
    for name, r in results.items():
        card = scorecard_markdown(r["scorecard"], f"{name}: held-out accuracy against `{heads[0]}`", level=5)
        sections.append(f"#### {name} ({r['samples']} images, {len(r['classes'])} classes; "
                        f"{r['wall_s'] / 60:.1f} min)\n\n{card}\n\nWhat the inner CV chose per outer fold:\n\n"
                        f"{chosen_table(r, heads)}")
    b = pooled["blocks"]
    order = sorted(b["average_ranks"].items(), key=lambda kv: kv[1])
    ranking = ", ".join(f"`{h}` {v:.2f}" for h, v in order)
    over = (f"Friedman over the {b['blocks']} (dataset, fold) blocks: χ² = {b['statistic']:.2f}, p = {b['p']:.3g}; "
            f"average ranks {ranking}; Nemenyi CD = {b['cd']:.2f}. The folds of one dataset are not independent "
            f"datasets, so this pooled ranking summarises rather than tests.")
    if "datasets" in pooled:
        d = pooled["datasets"]
        over += f" Over the {d['blocks']} datasets alone: χ² = {d['statistic']:.2f}, p = {d['p']:.3g}."
    else:
        over += (" A Friedman test over datasets alone needs at least 3 of them (here "
                 f"{len(results)}; give --cifar for the paper's two CIFAR-10 pairs).")
    return f"""
Every head — the dressed quantum circuit, its controls and the classical heads — is tuned by the same protocol and
scored on data it never saw. Per dataset: {FOLDS}-fold stratified cross-validation of train + val pooled (folds
drawn by seed {base.seed}); in each outer fold, every head's declared search space ({SEARCH_SIZE} configurations
each: learning rate × weight decay × depth for the quantum heads, × width for the classical twin, × nothing more
for `linear`; the fitted heads' own hyper-parameters) is scored by the same 5-fold inner cross-validation of that
fold's training part alone, with the first seed; the best configuration is then trained with each of {len(seeds)}
seeds ({seeds[0]}..{seeds[-1]}) on 80% of the training part, its epoch selected on the other 20%, and scored
once on the held-out fold. Trained heads: {base.epochs} epochs, batch {base.batch_size}, StepLR
({base.step_size}, {base.gamma}); {base.backbone} features.

The controls: `quantum:entangle=false` is the same circuit with its CNOTs removed; `fourier` is a classical
random-Fourier-feature model whose frequencies are the circuit's spectrum for its angle encoding (Landman et al.
2022, Schreiber et al. 2023), on the same 4 principal components as `svm:pca=4`.

{chr(10).join(s + chr(10) for s in sections)}
Across datasets: {over}
"""
