"""User errors are one line, bugs show their traceback, checking settings contacts nothing, --quiet is quiet."""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from qtransfer import cli
from qtransfer.config import TrainConfig
from qtransfer.errors import InputError, MissingFileError, QTransferError


def test_a_user_error_is_one_line_and_a_bug_shows_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["evaluate", "no-such-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-run has no config.json" in err and "Traceback" not in err

    def broken(args: object) -> int:
        raise KeyError("an internal mistake")

    monkeypatch.setattr(cli, "cmd_info", broken)
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'an internal mistake'" in err and "please report it" in err


def test_main_leaves_the_process_warning_settings_as_it_found_them() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filters, formatwarning = list(warnings.filters), warnings.formatwarning
        seen = []

        def handler(args: object) -> int:
            seen.append(warnings.filters[0][0])  # inside a command, the CLI's own filter: warnings are shown once
            seen.append(warnings.formatwarning("w", UserWarning, cli.__file__, 1))
            return 0

        cli_info = cli.cmd_info
        try:
            cli.cmd_info = handler  # type: ignore[assignment]
            assert cli.main(["info"]) == 0
        finally:
            cli.cmd_info = cli_info  # type: ignore[assignment]
        assert seen == ["default", "qtransfer: warning: w\n"]
        assert warnings.filters == filters and warnings.formatwarning is formatwarning


def test_user_errors_are_qtransfer_errors_and_still_the_builtin_kinds() -> None:
    assert issubclass(InputError, QTransferError) and issubclass(InputError, ValueError)
    assert issubclass(MissingFileError, FileNotFoundError)
    with pytest.raises(QTransferError, match="learning rate must be > 0"):
        TrainConfig(data="somewhere", lr=0).validate()


def test_validating_a_remote_backend_contacts_no_service(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    config = TrainConfig(data="somewhere", backend="pennylane:qiskit.remote", device_options='{"backend": "ibm_x"}')
    config.validate()
    with pytest.raises(InputError, match=re.escape("'no.such.device' is not available")):
        TrainConfig(data="somewhere", backend="pennylane:no.such.device").validate()


def test_the_cli_checks_a_remote_backend_without_contacting_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    attempts: list[tuple] = []

    def offline(*args: object, **kwargs: object) -> None:
        attempts.append(args)  # recorded, so that a library catching the error cannot hide the attempt
        raise OSError("network disabled in this test")

    for owner, name in ((socket.socket, "connect"), (socket, "create_connection"), (socket, "getaddrinfo")):
        monkeypatch.setattr(owner, name, offline)
    remote = ["--backend", "pennylane:qiskit.remote", "--device-options", '{"backend": "ibm_x"}', "--shots", "100"]
    assert cli.main(["--quiet", "train", *remote, "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset folder" in err and "does not exist" in err, err
    assert cli.main(["--quiet", "train", *remote, "--data", str(tmp_path), "--qubits", "0"]) == 1
    assert "n_qubits must be >= 1" in capsys.readouterr().err
    assert attempts == [] and list(tmp_path.iterdir()) == []


def test_quiet_runs_show_no_progress_bars(
    hymenoptera: Path, shared_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["train", "--data", str(hymenoptera), "--backbone", "efficientnet_lite0", "--head", "linear",
              "--epochs", "1", "--cache-dir", str(shared_cache), "--workers", "0"]
    assert cli.main(["--quiet", *common, "--out", str(tmp_path / "quiet")]) == 0
    assert "epochs:" not in capsys.readouterr().err
    assert cli.main([*common, "--out", str(tmp_path / "loud")]) == 0
    assert "epochs:" in capsys.readouterr().err


def test_the_default_backbone_trains_offline_with_its_packaged_imagenet_weights(
    hymenoptera: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("training with the default backbone opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # no downloaded weights to fall back on
    argv = ["--quiet", "train", "--data", str(hymenoptera), "--head", "linear", "--epochs", "1",
            "--cache-dir", str(shared_cache), "--workers", "0", "--out", str(tmp_path / "runs")]
    assert cli.main(argv) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["backbone"] == "efficientnet_lite0"
    assert json.loads((run_dir / "summary.json").read_text())["best_val_acc"] > 0.85  # ImageNet features, not random
