"""The paper's quantum-network-A experiments as `qtransfer reproduce qc` and `qtransfer reproduce qq`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .reproduce import ReproduceOptions, Reproduction, register_experiment
from .stats import describe, paired_difference, pm

PAPER_QC = 0.8067  # q2c notebook: test accuracy, CV network cut after 15 layers, linear network B, one run
PAPER_QQ = 0.8755  # paper, QQ example: test accuracy, one run (the notebook's printed run: 0.8733)
CV_DEPTHS = (0, 5, 10, 15, 20, 25)


def _table(rows: list[tuple[str, list[float], str]], header: str) -> str:
    lines = [f"| {header} | test accuracy (mean ± std over seeds) | min | max | paper |", "|---|---|---|---|---|"]
    for label, acc, paper in rows:
        d = describe(acc)
        lines.append(f"| {label} | {pm(d)} | {d['min']:.4f} | {d['max']:.4f} | {paper} |")
    return "\n".join(lines)


def _pair(a: list[float], b: list[float]) -> str:
    p = paired_difference(a, b)
    return f"{p['mean']:+.4f} [{p['ci95_low']:+.4f}, {p['ci95_high']:+.4f}] ({p['wins']} / {p['ties']} / {p['losses']})"


def _pretrained_qubit_network(run_dir: Path) -> tuple[Path, Any]:
    """Pretrain the qubit network A on its task A (seeded), save it, and load it back through the registry."""
    from .quantum_backbones import QubitCircuitFile, pretrain_qubit_tetromino

    path = run_dir / "qubit_tetromino.pt"
    pretrain_qubit_tetromino(seed=0).save(path)
    return path, QubitCircuitFile.load(path)


# ------------------------------------------------------------------------------------------- QC


@register_experiment("qc")
def _qc(options: ReproduceOptions, run_dir: Path) -> Reproduction:
    from .quantum_backbones import (
        QubitNetwork,
        create_quantum_backbone,
        tetromino_inputs,
    )
    from .quantum_to_classical import (
        classical_network,
        features_by_depth,
        noisy_coherent_states,
        plot_accuracy_by_depth,
        plot_feature_images,
        plot_loss_curves,
        train_classifier,
    )

    seeds = options.seeds if options.seeds is not None else [0, 1, 2, 3, 4]
    steps = options.steps or 1000
    run_dir.mkdir(parents=True, exist_ok=True)
    cv = create_quantum_backbone("cv-tetromino", depth=max(CV_DEPTHS), weights=options.data)
    _, qubit_file = _pretrained_qubit_network(run_dir)
    qubit_depths = list(range(qubit_file.weights.shape[0] + 1))
    test_x, test_y = noisy_coherent_states(1000, seed=10**6)

    def fit(train: torch.Tensor, test: torch.Tensor, train_y: torch.Tensor, seed: int) -> Any:
        torch.manual_seed(seed)
        return train_classifier(classical_network(train.shape[1], 7), train, train_y, test, test_y)

    acc: dict[tuple[str, int, str], list[float]] = {}
    curves: dict[str, list[list[float]]] = {}
    cv_test = features_by_depth(cv, test_x, CV_DEPTHS)
    qubit_nets = {d: QubitNetwork(qubit_file, d) for d in qubit_depths}
    qubit_test = {d: net(test_x) for d, net in qubit_nets.items()}
    for seed in tqdm(seeds, desc="qc seeds", unit="seed"):
        train_x, train_y = noisy_coherent_states(steps, seed=seed)
        cv_train = features_by_depth(cv, train_x, CV_DEPTHS)
        for d in CV_DEPTHS:
            for kind in ("amplitude", "probability"):
                tr, te = (cv_train[d], cv_test[d]) if kind == "amplitude" else (cv_train[d] ** 2, cv_test[d] ** 2)
                run = fit(tr, te, train_y, seed)
                acc.setdefault(("cv", d, kind), []).append(run.test_acc)
                if d in (0, 15) and kind == "amplitude":
                    curves.setdefault(f"CV network A, {d} layers", []).append(run.train_loss)
        for d, net in qubit_nets.items():
            run = fit(net(train_x), qubit_test[d], train_y, seed)
            acc.setdefault(("qubit", d, "amplitude"), []).append(run.test_acc)
            if d in (0, 5):
                curves.setdefault(f"qubit network A, {d} layers", []).append(run.train_loss)

    figures = [run_dir / "qc_features.png", run_dir / "qc_loss.png", run_dir / "qc_depth.png"]
    clean = tetromino_inputs()
    cv_clean = features_by_depth(cv, clean, [15, 25])
    plot_feature_images({
        "CV, 15 layers": cv_clean[15] ** 2,
        "CV, 25 layers": cv_clean[25] ** 2,
        "qubits, 5 layers": qubit_nets[5](clean) ** 2,
        "qubits, 8 layers": qubit_nets[8](clean) ** 2,
    }, figures[0])
    plot_loss_curves(curves, figures[1], f"QC: linear network B, training loss ({len(seeds)} seeds)")
    plot_accuracy_by_depth({
        "CV network (Killoran et al.)": {d: acc[("cv", d, "amplitude")] for d in CV_DEPTHS},
        "qubit network (pretrained here)": {d: acc[("qubit", d, "amplitude")] for d in qubit_depths},
    }, figures[2])

    rows = [
        ("CV, cut after 15 of 25 layers, amplitude features (the paper's)", acc[("cv", 15, "amplitude")], f"{PAPER_QC:.4f}"),
        ("CV, cut after 15 layers, probability features", acc[("cv", 15, "probability")], "–"),
        ("CV, all 25 layers", acc[("cv", 25, "amplitude")], "–"),
        ("no network A: Fock amplitudes of the input state", acc[("cv", 0, "amplitude")], "–"),
        ("qubits, cut after 5 of 8 layers", acc[("qubit", 5, "amplitude")], "–"),
        ("qubits, all 8 layers", acc[("qubit", 8, "amplitude")], "–"),
        ("qubits, no network A: Born amplitudes of the embedded input", acc[("qubit", 0, "amplitude")], "–"),
    ]
    body = f"""
Scheme QC: a pretrained quantum network A, frozen and cut, extracts features for a classical network B. Task B
(the paper's): which of the 7 two-mode coherent states |±α>|±α>, |±iα>|±iα> (α = 1.4) an input was, after a
random displacement (real and imaginary parts N(0, 0.6²) on both modes). Network A: the CV network of Killoran et
al. pretrained to write the 7 tetrominoes into Fock probabilities (the paper's weights), cutoff 11; features: the
renormalised 4×4 block of photon numbers below 4 (magnitudes of the amplitudes, as the paper's notebook, or
probabilities). Network B: one linear layer, Adam lr 0.01, {steps} steps of one noisy copy of each state;
test: 1000 more batches (7000 states, the same for every seed); seeds {seeds}. The qubit rows run the same task
on 4 qubits with the statevector engine: network A is an 8-layer strongly entangling circuit pretrained here to
write the same tetrominoes into its 16 Born probabilities (displacements enter as RY angles ±π/2 for ±α;
pretraining loss {qubit_file.loss:.3f}, 1 − Bhattacharyya overlap; saved as `qubit_tetromino.pt` and loaded
back through the quantum backbone registry).

{_table(rows, "network A")}

Paired differences (same seeds and data), mean [95% bootstrap interval] (better / tie / worse):
- CV cut at 15 layers − no network A: {_pair(acc[("cv", 15, "amplitude")], acc[("cv", 0, "amplitude")])}
- CV cut at 15 − all 25 layers: {_pair(acc[("cv", 15, "amplitude")], acc[("cv", 25, "amplitude")])}
- qubits cut at 5 − no network A: {_pair(acc[("qubit", 5, "amplitude")], acc[("qubit", 0, "amplitude")])}

Without network A, photon counting cannot tell the 7 states apart: their two modes carry the same |α|, so the
Fock magnitudes differ only through the noise (chance is 1/7 ≈ 0.143); network A turns the phases of the
amplitudes into photon-number statistics, which is what network B reads.

The feature figure shows the probabilities of the 4×4 block for each noiseless input state: all 25 CV layers
write the tetrominoes (L, O, T, I, S, J, Z) — the check that our gates follow the conventions the weights were
trained with; the cut network's features are intermediate images. The depth figure shows test accuracy against
the number of network A's layers kept.
"""
    results = {"seeds": seeds, "steps": steps, "accuracy": {f"{n}:{d}:{k}": v for (n, d, k), v in acc.items()},
               "qubit_pretraining_loss": qubit_file.loss}
    return Reproduction("qc", "QC: a pretrained quantum network A, a classical network B", body, figures, run_dir,
                        0.0, results)


# ------------------------------------------------------------------------------------------- QQ


def _learning_rate_note(paper_lr: list[float], faster: list[float], steps: int) -> str:
    slow, fast = float(np.mean(paper_lr)), float(np.mean(faster))
    if slow < 0.6 <= fast:
        return (f"At the notebook's learning rate our network B has not yet lifted p₀ of the non-Gaussian states "
                f"above 0.5 after {steps} steps (mean test accuracy {slow:.3f}, near the class balance); at 5× "
                f"that rate it does ({fast:.3f}).")
    return f"Mean test accuracy at the notebook's learning rate: {slow:.3f}; at 5× that rate: {fast:.3f}."


@register_experiment("qq")
def _qq(options: ReproduceOptions, run_dir: Path) -> Reproduction:
    from .quantum_backbones import QubitNetwork, create_quantum_backbone
    from .quantum_to_classical import (
        noisy_coherent_states,
        plot_loss_curves,
        train_classifier,
    )
    from .quantum_to_quantum import (
        GaussianityClassifier,
        QubitTransferClassifier,
        gaussianity_batches,
        train_gaussianity,
    )

    seeds = options.seeds if options.seeds is not None else [0, 1, 2, 3, 4]
    steps = options.steps or 500
    run_dir.mkdir(parents=True, exist_ok=True)
    notebook_a = create_quantum_backbone("cv-gaussianity", weights=options.data, squeeze_in_layer=False)
    squeezing_a = create_quantum_backbone("cv-gaussianity", weights=options.data, squeeze_in_layer=True)
    variants = {
        "A (as the notebook) + B, lr 0.01 (the paper's settings)": (notebook_a, 0.01),
        "A (as the notebook) + B, lr 0.05": (notebook_a, 0.05),
        "A with its squeezing gate + B, lr 0.05": (squeezing_a, 0.05),
        "B alone (no network A), lr 0.05": (None, 0.05),
    }
    test = gaussianity_batches(250, 8, seed=10**6)
    acc: dict[str, list[float]] = {}
    norms: dict[str, list[float]] = {}
    curves: dict[str, list[list[float]]] = {}
    for seed in tqdm(seeds, desc="qq seeds", unit="seed"):
        train = gaussianity_batches(steps, 8, seed=seed)
        for label, (network_a, lr) in variants.items():
            torch.manual_seed(seed)
            run = train_gaussianity(GaussianityClassifier(network_a, layers=3, cutoff=15), train, test, lr=lr)
            acc.setdefault(label, []).append(run.test_acc)
            norms.setdefault(label, []).append(run.norm)
            curves.setdefault(label, []).append(run.train_loss)

    qubit_path, qubit_file = _pretrained_qubit_network(run_dir)
    test_x, test_y = noisy_coherent_states(1000, seed=10**6)
    qubit_variants = {"qubit A (5 of 8 layers, frozen) + 2 trainable layers": QubitNetwork(qubit_file, 5),
                      "2 trainable layers alone": None}
    qubit_acc: dict[str, list[float]] = {}
    qubit_curves: dict[str, list[list[float]]] = {}
    for seed in seeds:
        train_x, train_y = noisy_coherent_states(1000, seed=seed)
        for label, network_a in qubit_variants.items():
            torch.manual_seed(seed)
            model = QubitTransferClassifier(network_a, qubit_file.template, 4, qubit_file.input_scale, 2, 7)
            run = train_classifier(model, train_x, train_y, test_x, test_y, lr=0.05)
            qubit_acc.setdefault(label, []).append(run.test_acc)
            qubit_curves.setdefault(label, []).append(run.train_loss)

    figures = [run_dir / "qq_loss.png", run_dir / "qq_qubit_loss.png"]
    plot_loss_curves(curves, figures[0], f"QQ (CV): training loss of network B ({len(seeds)} seeds)")
    plot_loss_curves(qubit_curves, figures[1], f"QQ (qubits): training loss of network B ({len(seeds)} seeds)")
    rows = [(label, acc[label], f"{PAPER_QQ:.4f}" if "paper" in label else "–") for label in variants]
    norm_rows = "\n".join(f"| {label} | {np.mean(norms[label]):.3f} |" for label in variants)
    first, fast, squeeze, alone = variants
    body = f"""
Scheme QQ: a pretrained quantum network A, frozen, then a trainable quantum network B; a measurement decides.
Task B (the paper's): Gaussian states (a coherent state α = 1) against non-Gaussian ones (the Fock state |1>),
both under a random Gaussian layer R(φ₁) S(s) R(φ₂) with φ ~ U(−2π, 2π), s ~ U(−0.5, 0.5). Network A: the
paper's pretrained one-layer circuit R·S·R·D·R·V (V the cubic phase gate); network B: three trainable layers of
the same form, initialised N(0, 0.001²); the vacuum probability p₀ decides (p₀ > 0.5: non-Gaussian), trained on
the notebook's cross entropy of p₀; cutoff 15, batch 8, {steps} Adam steps; test: 250 batches (2000 states, the
same for every seed); seeds {seeds}. The paper's notebook creates network A's squeezing gate without applying it
to the mode ("as the notebook"); the row "with its squeezing gate" applies it.

{_table(rows, "CV network")}

Paired differences, mean [95% bootstrap interval] (better / tie / worse): transfer − no transfer at lr 0.05:
{_pair(acc[fast], acc[alone])}; with − without A's squeezing gate: {_pair(acc[squeeze], acc[fast])}.

Probability kept below the cutoff at the end (mean over test states): the trained circuits push part of every
state past 15 photons, which lowers p₀ for free; a Fock simulator with a truncated space cannot avoid this, and
the paper's runs reported the same kind of norm loss.

| CV network | mean norm below the cutoff |
|---|---|
{norm_rows}

{_learning_rate_note(acc[first], acc[fast], steps)} Our gates are exact below the
cutoff; the paper's simulator exponentiated a truncated x̂³ for the cubic phase gate, and swapping that in (checked
for seed 0 at lr 0.01) moved the test accuracy by less than 0.01, so the difference lies in the optimisation path,
which the paper shows for one run only. The spread over seeds above is large: single runs of this task say little.

Qubits: the same scheme on 4 qubits with the statevector engine, on the QC task (7 noisy coherent states, entered
as angles): network A the pretrained qubit tetromino circuit cut after 5 layers (frozen), network B two trainable
strongly entangling layers; class j's probability is the Born probability of |j> renormalised over the 7
classes; Adam lr 0.05, 1000 steps of 7 states; test on 7000 states.

{_table([(label, qubit_acc[label], "–") for label in qubit_variants], "qubit network")}

Transfer − no transfer (qubits): {_pair(*qubit_acc.values())}.
"""
    results = {"seeds": seeds, "steps": steps, "accuracy": acc, "norm": norms, "qubit_accuracy": qubit_acc,
               "qubit_file": qubit_path.name}
    return Reproduction("qq", "QQ: a pretrained quantum network A, a trainable quantum network B", body, figures,
                        run_dir, 0.0, results)
