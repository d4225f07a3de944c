"""`qtransfer reproduce benchmark`: every head tuned alike per dataset, scorecards, ranks within and across datasets."""
from __future__ import annotations

from pathlib import Path

import pytest
from support.cifar import fake_cifar

from qtransfer.errors import InputError
from qtransfer.experiments.reproduce import ReproduceOptions, reproduce
from qtransfer.models.search import SEARCH_SIZE


def test_benchmark_on_three_datasets_ranks_within_and_across_them(tmp_path: Path, hymenoptera: Path,
                                                                  shared_cache: Path, monkeypatch) -> None:
    import qtransfer.experiments.reproduce.benchmark as benchmark

    fake_cifar(tmp_path / "cifar", per_class=4, monkeypatch=monkeypatch)
    real = benchmark.datasets

    def without_digits(options: ReproduceOptions, run_dir: Path) -> dict[str, str]:
        monkeypatch.setattr(benchmark, "write_digits", lambda dest: Path(options.data))  # stands in: 3 datasets
        found = real(options, run_dir)
        return {name: data for name, data in found.items() if name != "digits"}

    monkeypatch.setattr(benchmark, "datasets", without_digits)
    options = ReproduceOptions(data=str(hymenoptera), cifar=str(tmp_path / "cifar"), out=str(tmp_path / "runs"),
                               seeds=[1, 2], epochs=1, heads=["quantum", "linear", "logreg"],
                               cache_dir=str(shared_cache), num_workers=0, progress=False)
    result = reproduce("benchmark", options)
    data = result.results["datasets"]
    assert list(data) == ["ants/bees", "dogs/cats", "planes/cars"]
    assert data["dogs/cats"]["samples"] == 2 * 4 * 5 + 2 * 4  # CIFAR's 5 training batches, then its test batch
    for name, d in data.items():
        rows = {r["head"]: r for r in d["scorecard"]["rows"]}
        assert set(rows) == {"quantum", "linear", "logreg"} and rows["quantum"]["delta"] is None
        assert rows["linear"]["delta"]["verdict"] in ("better", "worse", "equivalent", "inconclusive")
        assert {(t["head"], t["fold"]) for t in d["tuning"]} == {(h, k) for h in rows for k in range(5)}
        assert all(len(t["scores"]) == SEARCH_SIZE for t in d["tuning"])
        assert (result.run_dir / f"benchmark_{name.replace('/', '_')}_ranks.png").stat().st_size > 0
    across = result.results["across"]
    assert across["blocks"]["blocks"] == 15 and across["datasets"]["blocks"] == 3
    text = (result.run_dir / "reproduction.md").read_text()
    assert "Over the 3 datasets alone" in text and "##### dogs/cats: held-out accuracy against `quantum`" in text
    assert (result.run_dir / "benchmark_accuracy.png").exists()
    assert (result.run_dir / "benchmark_ranks_all.png").exists()


def test_benchmark_refuses_what_it_cannot_score(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--data DIR"):
        reproduce("benchmark", ReproduceOptions(out=str(tmp_path)))
    with pytest.raises(InputError, match="quantum head given first"):
        reproduce("benchmark", ReproduceOptions(data="x", out=str(tmp_path), heads=["linear", "quantum", "logreg"]))


def test_width_study_runs_every_kind_at_every_width(tmp_path: Path, hymenoptera: Path, shared_cache: Path,
                                                    monkeypatch) -> None:
    import qtransfer.experiments.reproduce.width as width

    monkeypatch.setattr(width, "WIDTHS", (2, 3))
    monkeypatch.setattr(width, "write_digits", lambda dest: hymenoptera)  # stands in for digits: same pipeline
    options = ReproduceOptions(out=str(tmp_path), seeds=[1], epochs=1, cache_dir=str(shared_cache), num_workers=0,
                               progress=False)
    result = reproduce("width", options)
    table = result.results["table"]
    assert set(table) == {"quantum", "no entanglement", "classical twin"}
    assert all(set(rows) == {2, 3} and all(0 <= r["mean"] <= 1 for r in rows.values()) for rows in table.values())
    assert {(t["width"], t["against"]) for t in result.results["tests"]} == \
        {(w, o) for w in (2, 3) for o in ("no entanglement", "classical twin")}
    text = (result.run_dir / "reproduction.md").read_text()
    assert "| 2 | " in text and "| 3 | " in text and (result.run_dir / "width.png").stat().st_size > 0
