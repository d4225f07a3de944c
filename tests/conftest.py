"""Shared fixtures (the real dataset, a local HTTP server standing in for the internet) and the markers that the
fixtures a test uses imply: see [tool.pytest.ini_options] in pyproject.toml for what each marker means."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import markers
from support.shared import built_once

ROOT = Path(__file__).resolve().parents[1]
# Fixtures that read the real dataset or the paper's weights from $QTRANSFER_DATA: their users are `real_data`.
REAL_DATA_FIXTURES = frozenset({"hymenoptera", "mari2019"})
# Session fixtures that take tens of seconds to build (once per run, shared by the xdist workers): their users are
# `slow`, and the first to ask waits for the build, so their timeout is at least this many seconds.
EXPENSIVE_FIXTURES = frozenset({"shared_cache", "finished_run"})
EXPENSIVE_TIMEOUT = 600


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by the fixtures it uses, skip `gpu` tests where torch sees no CUDA device, and note any test
    whose code needs a marker it lacks."""
    cuda: bool | None = None
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & REAL_DATA_FIXTURES:
            item.add_marker(pytest.mark.real_data)
        if used & EXPENSIVE_FIXTURES:
            item.add_marker(pytest.mark.slow)
            if _timeout(item) < EXPENSIVE_TIMEOUT:
                item.add_marker(pytest.mark.timeout(EXPENSIVE_TIMEOUT), append=False)
        if item.get_closest_marker("distributed"):  # torchrun starts processes that each import torch
            item.add_marker(pytest.mark.subprocess)
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("gpu"):
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device; torch sees none on this machine"))
    config.stash[markers.PROBLEMS] = [line for item in items
                                     for line in markers.problems(item, REAL_DATA_FIXTURES, EXPENSIVE_FIXTURES)]


def _timeout(item: pytest.Item) -> float:
    """The timeout a test's own `timeout` marker sets, 0 where it has none."""
    marked = item.get_closest_marker("timeout")
    if marked is None:
        return 0.0
    return float(marked.args[0] if marked.args else marked.kwargs.get("timeout", 0.0))


def shared_data_dir() -> Path:
    """Where the real data lives: $QTRANSFER_DATA, else ../shared/data beside the project."""
    return Path(os.environ.get("QTRANSFER_DATA", ROOT.parent / "shared" / "data"))


def require_path(path: Path, what: str) -> Path:
    """Return `path`; when it is missing, fail under CI=true (the data must be there) and skip elsewhere."""
    if path.exists():
        return path
    msg = f"{what} not found at {path}; set QTRANSFER_DATA to the folder that holds it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def hymenoptera() -> Path:
    """The real ants/bees dataset (train/ and val/)."""
    return require_path(shared_data_dir() / "hymenoptera_data", "the hymenoptera dataset")


@pytest.fixture(scope="session")
def mari2019() -> Path:
    """The paper's pretrained CV weights (trained_params.npy, circuit_A.npy)."""
    return require_path(shared_data_dir() / "mari2019", "the paper's pretrained CV weights (mari2019/)")


@pytest.fixture
def http_server() -> Iterator[Callable[[Path], str]]:
    """Start a server on 127.0.0.1 for a directory; returns its base URL (no trailing slash)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[int]:
    """Torch runs the tests' own work on one thread; yields torch's default thread count. The tests' tensors are
    small (heads of a few qubits, batches of 4-10 samples), where a second thread buys nothing and must meet the
    first at every op: when the two cores are busy with anything else, each op then waits for a core, and training
    a head takes 10-20 times as long. Processes the tests start keep torch's default."""
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(1)
    yield default
    torch.set_num_threads(default)


@pytest.fixture(scope="session")
def shared_cache(hymenoptera: Path, one_torch_thread: int, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature cache for the whole run, so real-data tests extract each backbone's features once: the real
    dataset's EfficientNet-Lite0 features are extracted here once for all xdist workers, on torch's default threads
    (its convolutions do use every core)."""

    def extract(cache: Path) -> None:
        import torch

        from qtransfer.config import TrainConfig
        from qtransfer.features.pipeline import load_features

        torch.set_num_threads(one_torch_thread)
        try:
            load_features(TrainConfig(data=str(hymenoptera), backbone="efficientnet_lite0", cache_dir=str(cache),
                                      num_workers=0), progress=False)
        finally:
            torch.set_num_threads(1)

    return built_once(tmp_path_factory, "shared-feature-cache", extract)


@pytest.fixture(scope="session")
def finished_run(hymenoptera: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One finished training run on the real data (EfficientNet-Lite0, the quantum head, 2 epochs; step_size 2, so
    that its learning rate steps right after it and it can be resumed as the cut of a 4-epoch run): its directory
    and summary. It is trained once for all xdist workers; each worker gets its own copy, since evaluating or
    scanning it adds files beside its own (tests that change it work on a further copy)."""

    def run(out: Path) -> None:
        from qtransfer.config import TrainConfig
        from qtransfer.training.run import train

        train(TrainConfig(data=str(hymenoptera), backbone="efficientnet_lite0", epochs=2, step_size=2,
                          cache_dir=str(shared_cache), out=str(out), num_workers=0))

    (trained,) = built_once(tmp_path_factory, "finished-run", run).iterdir()
    copy = Path(shutil.copytree(trained, tmp_path_factory.mktemp("finished-run") / trained.name))
    return copy, json.loads((copy / "summary.json").read_text())


@pytest.fixture
def pixels_backbone(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A stand-in network A registered as "pixels" for the test: its features are the 8x8 RGB pixels (192 numbers),
    fast and separable enough for digits; its (unused) weights are "packaged", so runs need no --weights."""
    import torch
    from torch import nn
    from torchvision.transforms import InterpolationMode

    from qtransfer.models.backbones import BACKBONES, BackboneSpec

    def build() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(192, 10))

    def cut(model: nn.Sequential) -> int:
        del model[1]
        return 3 * 8 * 8

    weights = tmp_path_factory.mktemp("pixels") / "pixels.pth"
    torch.save(build().state_dict(), weights)
    monkeypatch.setitem(BACKBONES, "pixels", BackboneSpec(
        name="pixels", build=build, cut=cut, url=None, file_name="pixels.pth", resize=8, crop=8, mean=(0.5,) * 3,
        std=(0.5,) * 3, interpolation=InterpolationMode.NEAREST, packaged=lambda: weights))
    return "pixels"
