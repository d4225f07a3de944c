#!/usr/bin/env python
"""Time of one fit (inner cross-validation included) of each fitted classical head at the ants/bees size.

    OMP_NUM_THREADS=1 python benchmarks/baseline_fit.py --out baseline_fit.json

Data: make_classification, 244 training rows (the hymenoptera training split) + 153 held out, 1280 features
(EfficientNet-Lite0's), 20 informative; every head with pca 0 and 8. "cpu_seconds" (process time) is the
figure to read on a shared machine, "seconds" the wall-clock time beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from timing import emit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv: list[str] | None = None) -> None:
    from sklearn.datasets import make_classification

    from qtransfer.models.heads import create_head

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classes", type=int, nargs="+", default=[2, 4])
    p.add_argument("--pca", type=int, nargs="+", default=[0, 8])
    p.add_argument("--out", help="also write the JSON to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for n_classes in args.classes:
        x, y = make_classification(244 + 153, 1280, n_informative=20, n_classes=n_classes, random_state=0)
        x, y = torch.from_numpy(x).float(), torch.from_numpy(y)
        for name in ("logreg", "svm", "mlp"):
            for pca in args.pca:
                head = create_head(name, 1280, n_classes, pca=pca)
                wall, cpu = time.perf_counter(), time.process_time()
                choices = head.fit(x[:244], y[:244], seed=0)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                accuracy = (head(x[244:]).argmax(1) == y[244:]).double().mean().item()
                rows.append({"head": name, "classes": n_classes, "pca": pca, "cpu_seconds": round(cpu, 3),
                             "seconds": round(wall, 3), "held_out_accuracy": round(accuracy, 4), "choices": choices})
                print(rows[-1], file=sys.stderr)
    emit({"threads": 1, "fits": rows}, args.out)


if __name__ == "__main__":
    main()
