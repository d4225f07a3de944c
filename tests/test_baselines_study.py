"""`qtransfer reproduce baselines`: quantum and classical heads on ants/bees and digits by repeated CV, tested."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtransfer.errors import InputError
from qtransfer.experiments.reproduce import ReproduceOptions, reproduce


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_baselines_study_pairs_quantum_with_the_best_classical_head_on_both_datasets(
    hymenoptera: Path, pixels_backbone: str, tmp_path: Path
) -> None:
    options = ReproduceOptions(data=str(hymenoptera), out=str(tmp_path / "runs"), seeds=[0], epochs=1,
                               backbones=[pixels_backbone], heads=["quantum", "linear", "logreg:pca=8"],
                               cache_dir=str(tmp_path / "cache"), num_workers=0, progress=False)
    result = reproduce("baselines", options, report=tmp_path / "REPRODUCTION.md")
    results = result.results["results"]
    assert set(results) == {"ants/bees", "digits"}
    digits = result.results["observations"]["digits"]
    assert {r["head"] for r in digits} == {"quantum", "linear", "logreg:pca=8"}
    assert len(digits) == 3 * 5  # every head on the same 5 folds of one seed
    # the folds pool train + val (1,437 digits) and hold each sample out exactly once
    held = [r for r in digits if r["head"] == "logreg:pca=8"]
    assert sum(r["test"] for r in held) == 1077 + 360
    assert all(r["choices"]["C"] > 0 for r in held)
    for res in results.values():
        assert res["best_classical"] in ("linear", "logreg:pca=8")
        test = next(p for p in res["paired"] if p["a"] == "quantum" and p["b"] == res["best_classical"])
        assert test["n"] == 5 and 0 < test["p_sign_flip"] <= 1
        c = test["corrected"]
        assert c["low"] <= test["ci95_low"] and c["high"] >= test["ci95_high"]  # the correction only widens
    assert results["digits"]["heads"]["logreg:pca=8"]["accuracy"]["mean"] > 0.8  # 8 components of the pixels
    assert results["digits"]["heads"]["logreg:pca=8"]["roc_auc"]["mean"] > 0.95  # one-vs-rest over 10 classes
    text = (tmp_path / "REPRODUCTION.md").read_text()
    assert "Does the circuit help?" in text and "Nadeau" in text and "`quantum` − `" in text
    assert (result.run_dir / "baselines.png").stat().st_size > 0
    assert json.loads((result.run_dir / "reproduction.json").read_text())["seeds"] == [0]
    with pytest.raises(InputError, match="at least one of each"):
        reproduce("baselines", ReproduceOptions(data=str(hymenoptera), out=str(tmp_path), heads=["logreg"]))
