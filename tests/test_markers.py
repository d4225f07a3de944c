"""The markers say what each test needs: checked against the fixtures and code of every test collected in this run."""
from __future__ import annotations

import textwrap

import pytest
from support.markers import PROBLEMS, TESTS, code_reached, runs_torchrun, starts_processes


def test_every_collected_test_carries_the_markers_its_fixtures_and_code_need(request: pytest.FixtureRequest) -> None:
    problems = request.config.stash[PROBLEMS]
    assert not problems, "\n".join(problems)


# Compiled as if they stood in tests/, but out of this module's reach, so that its own tests start no process.
SAMPLES = textwrap.dedent('''
    import subprocess

    def quiet_child():
        subprocess.run(["true"], check=True)

    def through_a_helper():
        quiet_child()

    def launch():
        return ["python", "-m", "torch.distributed.run", "--nproc-per-node", "2"]

    def pure(x):
        return [x, "-m", "torch.distributed.launch"]

    in_a_lambda = lambda: through_a_helper()
    launch_in_a_lambda = lambda: launch()
''')


def test_a_process_started_two_helpers_down_or_in_a_lambda_is_found_and_a_pure_function_is_not() -> None:
    sample: dict[str, object] = {}
    exec(compile(SAMPLES, str(TESTS / "sample_helpers.py"), "exec"), sample)
    reached = {name: list(code_reached([sample[name]])) for name in
               ("through_a_helper", "in_a_lambda", "launch", "pure", "launch_in_a_lambda")}
    assert [c.co_name for c in reached["through_a_helper"]] == ["through_a_helper", "quiet_child"]
    assert starts_processes(reached["through_a_helper"]) and starts_processes(reached["in_a_lambda"])
    assert not starts_processes(reached["launch"]) and not starts_processes(reached["pure"])
    assert runs_torchrun(reached["launch"]) and runs_torchrun(reached["launch_in_a_lambda"])
    assert not runs_torchrun(reached["pure"]) and not runs_torchrun(reached["through_a_helper"])
    # qtransfer's own code is not followed: its worker pools are not the test's processes
    from qtransfer.storage import atomic_write_text

    assert list(code_reached([atomic_write_text])) == []
