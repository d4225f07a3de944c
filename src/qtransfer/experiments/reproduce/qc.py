"""QC: a pretrained quantum network A (CV or qubit) and a classical network B: `qtransfer reproduce qc`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from qtransfer.experiments.quantum_to_classical import (
    classical_network,
    features_by_depth,
    noisy_coherent_states,
    plot_accuracy_by_depth,
    plot_feature_images,
    plot_loss_curves,
    train_classifier,
)
from qtransfer.experiments.reproduce.registry import (
    ReproduceOptions,
    Reproduction,
    register_experiment,
)
from qtransfer.experiments.reproduce.text import PAIRED_INTRO, paired, seeds_table
from qtransfer.models.quantum_backbones import (
    QubitCircuitFile,
    QubitNetwork,
    create_quantum_backbone,
    pretrain_qubit_tetromino,
    tetromino_inputs,
)
from qtransfer.report.tables import PAIRED_NOTE

PAPER_QC = 0.8067  # q2c notebook: test accuracy, CV network cut after 15 layers, linear network B, one run
CV_DEPTHS = (0, 5, 10, 15, 20, 25)


def pretrained_qubit_network(run_dir: Path) -> tuple[Path, Any]:
    """Pretrain the qubit network A on its task A (seeded), save it, and load it back through the registry."""

    path = run_dir / "qubit_tetromino.pt"
    pretrain_qubit_tetromino(seed=0).save(path)
    return path, QubitCircuitFile.load(path)


@register_experiment("qc")
def _qc(options: ReproduceOptions, run_dir: Path) -> Reproduction:
    seeds = options.seeds if options.seeds is not None else [0, 1, 2, 3, 4]
    steps = options.steps or 1000
    run_dir.mkdir(parents=True, exist_ok=True)
    cv = create_quantum_backbone("cv-tetromino", depth=max(CV_DEPTHS), weights=options.data)
    _, qubit_file = pretrained_qubit_network(run_dir)
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
    for seed in tqdm(seeds, desc="qc seeds", unit="seed", disable=not options.progress):
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

{seeds_table(rows, "network A")}

Paired differences (same seeds and data), {PAIRED_INTRO}:
- CV cut at 15 layers − no network A: {paired(acc[("cv", 15, "amplitude")], acc[("cv", 0, "amplitude")])}
- CV cut at 15 − all 25 layers: {paired(acc[("cv", 15, "amplitude")], acc[("cv", 25, "amplitude")])}
- qubits cut at 5 − no network A: {paired(acc[("qubit", 5, "amplitude")], acc[("qubit", 0, "amplitude")])}

{PAIRED_NOTE}

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
