"""The command line run in this process, through its own entry point (no torch import per call)."""
from __future__ import annotations

import pytest


def in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`qtransfer ARGV` in this process: exit code, stdout and stderr of this call alone."""
    from qtransfer.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
