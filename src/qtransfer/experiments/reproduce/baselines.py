"""Does the circuit help? Every head, quantum and classical, tuned or not, on ants/bees and on digits by repeated
cross-validation, with paired tests fit for few observations: `qtransfer reproduce baselines`."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from qtransfer.config import TrainConfig
from qtransfer.data.digits import write_digits
from qtransfer.errors import InputError
from qtransfer.experiments.cv import CVSettings, cross_validate
from qtransfer.experiments.reproduce.registry import (
    ReproduceOptions,
    Reproduction,
    register_experiment,
)
from qtransfer.experiments.stats import (
    corrected_resampled_t,
    describe,
    paired_difference,
    t_interval,
)
from qtransfer.report import figures
from qtransfer.report.tables import pm

# The dressed circuit, its same-shape classical twin, a Linear layer, three tuned scikit-learn models, two quantum
# kernels on 4 PCA components (n_qubits) and their matched classical control: an RBF SVM on the same 4 components.
HEADS = ("quantum", "classical", "linear", "logreg", "svm", "mlp", "qkernel", "projected_qkernel", "svm:pca=4")
QUANTUM = ("quantum", "qkernel", "projected_qkernel")
METRICS = ("accuracy", "balanced_accuracy", "roc_auc")
FOLDS = 5


def observations(data: str, base: TrainConfig, seeds: list[int], heads: tuple[str, ...], progress: bool
                 ) -> list[dict[str, Any]]:
    """One row per head, seed and fold: `qtransfer cv` over train + val pooled, the seed drawing the folds."""
    rows = []
    for seed in seeds:
        config = replace(base, data=data, seed=seed, name=f"cv-{Path(data).name}-{seed}")
        _, cv = cross_validate(CVSettings(config, heads=list(heads), folds=FOLDS, metrics=list(METRICS)),
                               progress=progress)
        rows += [{**r, "seed": seed} for r in cv["folds"]]
    return rows


def summarize(rows: list[dict[str, Any]], heads: tuple[str, ...]) -> dict[str, Any]:
    """Per head: held-out metrics over (seed, fold) with t-intervals, head training time, the choices made; paired
    tests of each quantum head against the best classical head and of each quantum kernel against its control."""
    per_head: dict[str, Any] = {}
    for head in heads:
        mine = [r for r in rows if r["head"] == head]
        per_head[head] = {
            **{m: {**describe(v), "ci95": t_interval(v)} for m in METRICS
               if None not in (v := [r["held_out"][m] for r in mine])},
            "train_s": describe([r["train_s"] for r in mine]),
            "choices": [r.get("choices", {}) for r in mine],
        }
    classical = [h for h in heads if h.partition(":")[0] not in QUANTUM]
    best_classical = max(classical, key=lambda h: per_head[h]["accuracy"]["mean"])
    pairs = [(q, best_classical) for q in heads if q.partition(":")[0] in QUANTUM]
    pairs += [(q, "svm:pca=4") for q in ("qkernel", "projected_qkernel") if q in heads and "svm:pca=4" in heads]
    pairs += [("quantum", h) for h in ("classical", "linear") if "quantum" in heads and h in heads]
    tests = []
    for a, b in dict.fromkeys(pairs):
        key = {(r["seed"], r["fold"]): r for r in rows if r["head"] == a}
        other = {(r["seed"], r["fold"]): r for r in rows if r["head"] == b}
        common = sorted(key.keys() & other.keys())
        va, vb = [key[k]["held_out"]["accuracy"] for k in common], [other[k]["held_out"]["accuracy"] for k in common]
        first = key[common[0]]
        tests.append({"a": a, "b": b, "metric": "accuracy", **paired_difference(va, vb),
                      "corrected": corrected_resampled_t([x - y for x, y in zip(va, vb)],
                                                         first["train"] + first["select"],
                                                         first["test"])})
    return {"heads": per_head, "best_classical": best_classical, "paired": tests}


def plot(results: dict[str, dict[str, Any]], rows: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Held-out accuracy of every head per (seed, fold), mean and 95% t-interval, and head training time."""
    names = list(results)
    fig, axes = figures.subplots(2, len(names), figsize=(6.5 * len(names), 8), squeeze=False)
    palette = figures.colors()
    for col, name in enumerate(names):
        heads = list(results[name]["heads"])
        ax = axes[0, col]
        for i, head in enumerate(heads):
            acc = [r["held_out"]["accuracy"] for r in rows[name] if r["head"] == head]
            colour = palette[0] if head.partition(":")[0] in QUANTUM else palette[1]
            ax.scatter([i + (j % 5 - 2) * 0.06 for j in range(len(acc))], acc, s=10, alpha=0.5, color=colour)
            s = results[name]["heads"][head]["accuracy"]
            ax.errorbar(i + 0.3, s["mean"], yerr=[[s["mean"] - s["ci95"][0]], [s["ci95"][1] - s["mean"]]],
                        fmt="o", color="black", capsize=3)
        ax.set_xticks(range(len(heads)), heads, rotation=35, ha="right")
        ax.set_ylabel("held-out accuracy")
        ax.set_title(f"{name}: each seed × fold, mean and 95% t-interval")
        ax.grid(alpha=0.3, axis="y")
        ax = axes[1, col]
        seconds = [results[name]["heads"][h]["train_s"]["mean"] for h in heads]
        bars = ax.bar(range(len(heads)), seconds,
                      color=[palette[0] if h.partition(":")[0] in QUANTUM else palette[1] for h in heads])
        ax.bar_label(bars, [f"{v:.1f}" for v in seconds], fontsize=8)
        ax.set_xticks(range(len(heads)), heads, rotation=35, ha="right")
        ax.set_ylabel("head training s per fold (incl. inner CV)")
        ax.set_title("blue: quantum heads, orange: classical heads")
        ax.grid(alpha=0.3, axis="y")
    figures.save(fig, path)


def _table(result: dict[str, Any]) -> str:
    lines = ["| head | n | held-out accuracy (mean ± std) | 95% t-interval | balanced accuracy | ROC-AUC | head s |",
             "|---|---|---|---|---|---|---|"]
    for head, h in result["heads"].items():
        a = h["accuracy"]
        bal = pm(h["balanced_accuracy"]) if "balanced_accuracy" in h else "–"
        auc = pm(h["roc_auc"]) if "roc_auc" in h else "–"
        lines.append(f"| `{head}` | {a['n']} | {pm(a)} | [{a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}] | {bal} | {auc} "
                     f"| {h['train_s']['mean']:.2f} |")
    return "\n".join(lines)


def _tests(result: dict[str, Any]) -> str:
    lines = [("| a − b (held-out accuracy) | paired n | mean | 95% t-interval | corrected 95% interval (Nadeau–Bengio) "
             "| sign-flip p | d_z | a better / tie / worse |"), "|---|---|---|---|---|---|---|---|"]
    for p in result["paired"]:
        c = p["corrected"]
        lines.append(f"| `{p['a']}` − `{p['b']}` | {p['n']} | {p['mean']:+.4f} "
                     f"| [{p['ci95_low']:+.4f}, {p['ci95_high']:+.4f}] "
                     f"| [{c['low']:+.4f}, {c['high']:+.4f}] | {p['p_sign_flip']:.3g} | {p['d_z']:+.2f} "
                     f"| {p['wins']} / {p['ties']} / {p['losses']} |")
    return "\n".join(lines)


@register_experiment("baselines")
def _baselines(options: ReproduceOptions, run_dir: Path) -> Reproduction:
    if not options.data:
        raise InputError("reproduce baselines needs --data DIR, the hymenoptera_data folder "
                         "(`qtransfer data hymenoptera --dest DIR` downloads it)")
    seeds = options.seeds if options.seeds is not None else [42, 43]
    run_dir.mkdir(parents=True, exist_ok=True)
    datasets = {"ants/bees": options.data, "digits": str(write_digits(run_dir / "data"))}
    base = TrainConfig(backbone=(options.backbones or ["efficientnet_lite0"])[0], epochs=options.epochs or 30,
                       cache_dir=options.cache_dir, device=options.device, num_workers=options.num_workers,
                       out=str(run_dir))
    heads = tuple(options.heads or HEADS)
    if not any(h.partition(":")[0] in QUANTUM for h in heads) or all(h.partition(":")[0] in QUANTUM for h in heads):
        raise InputError(f"reproduce baselines compares quantum with classical heads; --heads {' '.join(heads)} "
                         f"needs at least one of each (quantum: {', '.join(QUANTUM)})")
    rows = {name: observations(data, base, seeds, heads, options.progress) for name, data in datasets.items()}
    results = {name: summarize(r, heads) for name, r in rows.items()}
    figure = run_dir / "baselines.png"
    plot(results, rows, figure)
    sections = "\n\n".join(f"#### {name}\n\n{_table(res)}\n\nPaired over the same seeds and folds (best classical "
                           f"head by mean held-out accuracy: `{res['best_classical']}`):\n\n{_tests(res)}"
                           for name, res in results.items())
    body = f"""
Heads {", ".join(f"`{h}`" for h in heads)} on the same cached {base.backbone} features, scored on held-out folds:
{FOLDS}-fold stratified cross-validation of train + val pooled (ants/bees: 397 images, 2 classes; digits:
scikit-learn's handwritten digits written by `qtransfer data digits`, 1,437 images, 10 classes), once per seed
{seeds} (the seed draws the folds and initialises the heads), so each head has {FOLDS * len(seeds)} paired
observations per dataset. Trained heads (`quantum`, `classical`, `linear`: {base.epochs} epochs, Adam lr
{base.lr}, batch {base.batch_size}) select their epoch on 20% of each fold's training part and train on the
other 80%; fitted heads (`logreg`, `svm`, `mlp`, `qkernel`, `projected_qkernel`, `svm:pca=4`) are fitted on the
same 80% and choose their hyper-parameters by inner cross-validation on it alone. The quantum kernels (the
tutorial's embedding, 4 qubits) and `svm:pca=4` see the same 4 principal components, fitted on each fold's
training part.

{sections}

{_verdict(results)}

How to read the tests: the t-interval and the sign-flip p-value treat the {FOLDS * len(seeds)} (seed, fold)
differences as independent, which cross-validation folds are not (their training sets overlap): the corrected
interval of Nadeau and Bengio (2003) widens the t-interval for that and is the one to trust. The best classical
head is chosen on the same folds, which favours it slightly.
"""
    title = "Does the circuit help? Tuned classical baselines and quantum kernels"
    return Reproduction("baselines", title, body, [figure], run_dir, 0.0,
                        {"seeds": seeds, "results": results, "observations": rows})


def _verdict(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, res in results.items():
        if "quantum" not in res["heads"]:
            continue
        q = res["heads"]["quantum"]["accuracy"]
        best = res["best_classical"]
        b = res["heads"][best]["accuracy"]
        test = next(p for p in res["paired"] if p["a"] == "quantum" and p["b"] == best)
        c = test["corrected"]
        side = ("no better and no worse than" if c["low"] <= 0 <= c["high"]
                else "better than" if c["low"] > 0 else "worse than")
        lines.append(f"On {name} the dressed quantum circuit ({q['mean']:.4f}) is {side} the best classical head "
                     f"`{best}` ({b['mean']:.4f}): difference {test['mean']:+.4f}, corrected 95% interval "
                     f"[{c['low']:+.4f}, {c['high']:+.4f}].")
        for a, b_name, what in (("quantum", "classical", "its same-shape classical twin"),
                                ("qkernel", "svm:pca=4", "the RBF SVM on the same principal components"),
                                ("projected_qkernel", "svm:pca=4", "the RBF SVM on the same principal components")):
            p = next((p for p in res["paired"] if p["a"] == a and p["b"] == b_name and b_name != best), None)
            if p is not None:
                pc = p["corrected"]
                lines.append(f"`{a}` against {what} (`{b_name}`): {p['mean']:+.4f} [{pc['low']:+.4f}, "
                             f"{pc['high']:+.4f}].")
    return " ".join(lines)
