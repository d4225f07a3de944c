"""The fused engine path: adjoint gradients, fusion, memory that does not grow with depth, devices."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from support.circuits import random_circuit

import qtransfer
from qtransfer import (
    Circuit,
    CompiledCircuit,
    Gate,
    Observable,
    inp,
    make_circuit,
    weight,
)
from qtransfer.quantum.fused_schedule import statevector_ops
from qtransfer.quantum.fusion import Block, Permutation, Wide, schedule
from qtransfer.quantum.memory import circuit_bytes

TOL = 1e-10


def _values_and_grads(circuit: Circuit, method: str, batch: int = 3, seed: int = 0, **options) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, circuit.n_inputs, generator=g, dtype=torch.float64) * 6 - 3).requires_grad_()
    w = (torch.rand(circuit.n_weights, generator=g, dtype=torch.float64) * 6 - 3).requires_grad_()
    coef = torch.randn(batch, circuit.n_outputs, generator=g, dtype=torch.float64)
    out = CompiledCircuit(circuit, dtype=torch.float64, method=method, **options)(x, w)
    gx, gw = torch.autograd.grad((out * coef).sum() + 0 * (x.sum() + w.sum()), [x, w])
    return [out, gx, gw]


@pytest.mark.parametrize("seed", range(16))
def test_adjoint_gradients_equal_autograd_through_the_gate_path(seed: int) -> None:
    circuit = random_circuit(random.Random(100 + seed), n_qubits=7 + seed % 4)
    for ours, reference in zip(_values_and_grads(circuit, "fused", seed=seed),
                               _values_and_grads(circuit, "gates", seed=seed)):
        torch.testing.assert_close(ours, reference, atol=TOL, rtol=0)


@pytest.mark.parametrize("template", ["tutorial", "strongly_entangling", "basic_entangler", "ring_cz"])
def test_templates_at_ten_qubits_equal_the_gate_path(template: str) -> None:
    circuit = make_circuit(template, 10, 3)
    for ours, reference in zip(_values_and_grads(circuit, "fused"), _values_and_grads(circuit, "gates")):
        torch.testing.assert_close(ours, reference, atol=TOL, rtol=0)


def test_inputs_after_entangling_gates_make_per_sample_blocks_and_wide_gates() -> None:
    # data re-uploading: input rotations between entangling layers, a wide parameterised gate, X/Y readout
    n = 8
    gates = [Gate("H", (i,)) for i in range(n)]
    gates += [Gate("CNOT", (i, i + 1)) for i in range(n - 1)]
    gates += [Gate("RX", (i,), (inp(i),)) for i in range(n)]
    gates += [Gate("CRY", (0, n - 1), (weight(0),)), Gate("IsingXX", (2, 3), (inp(1),)), Gate("CZ", (1, n - 2))]
    gates += [Gate("Rot", (i,), (weight(1), inp(i), weight(2))) for i in range(n)]
    obs = (Observable("Z", (0,)), Observable("XY", (3, 6)), Observable("ZZ", (1, 7)), Observable("Y", (5,)))
    circuit = Circuit(n, n, (3,), tuple(gates), obs)
    kinds = {type(op) for op in schedule(statevector_ops(circuit), n, 3).ops}
    assert {Block, Permutation, Wide} <= kinds
    for ours, reference in zip(_values_and_grads(circuit, "fused", block_qubits=3),
                               _values_and_grads(circuit, "gates")):
        torch.testing.assert_close(ours, reference, atol=TOL, rtol=0)


@pytest.mark.parametrize("template", ["tutorial", "strongly_entangling"])
def test_every_block_width_gives_the_same_circuit(template: str) -> None:
    circuit = make_circuit(template, 9, 4)
    reference = _values_and_grads(circuit, "gates")
    for k in range(1, 7):
        for ours, ref in zip(_values_and_grads(circuit, "fused", block_qubits=k), reference):
            torch.testing.assert_close(ours, ref, atol=TOL, rtol=0)


def test_a_schedule_holds_every_gate_once_in_an_order_that_respects_shared_wires() -> None:
    circuit = random_circuit(random.Random(5), n_qubits=9)
    sched = schedule(statevector_ops(circuit), circuit.n_qubits, 3)
    order = [g for wire in sched.prefix for g in wire]
    for op in sched.ops:
        order += list(op.gates) if isinstance(op, (Block, Permutation)) else [op.gate]
    assert sorted(order) == list(range(len(circuit.gates)))
    position = {g: i for i, g in enumerate(order)}
    prefix = {g for wire in sched.prefix for g in wire}
    for a in range(len(circuit.gates)):
        for b in range(a + 1, len(circuit.gates)):
            shared = set(circuit.gates[a].wires) & set(circuit.gates[b].wires)
            if shared and not {a, b} <= prefix:
                assert position[a] < position[b], (a, b)


def test_the_final_state_and_its_gradient_match_the_gate_path() -> None:
    circuit = make_circuit("strongly_entangling", 8, 2)
    x = torch.rand(4, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    states = [CompiledCircuit(circuit, dtype=torch.float64, method=m).state(x, w) for m in ("fused", "gates")]
    torch.testing.assert_close(states[0], states[1], atol=TOL, rtol=0)
    probe = torch.randn(states[0].shape, dtype=torch.complex128)
    grads = [torch.autograd.grad((s * probe).real.sum(), [x, w]) for s in states]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


def test_outputs_do_not_share_memory_with_later_calls() -> None:
    compiled = CompiledCircuit(make_circuit("tutorial", 8, 2))
    x, w = torch.rand(5, 8), torch.randn(16)
    first = compiled(x, w)
    kept = first.clone()
    state = compiled.state(x, w)
    compiled(torch.rand(5, 8), w)
    compiled.state(torch.rand(5, 8), w)
    assert torch.equal(first, kept)
    torch.testing.assert_close(state, compiled.state(x, w), atol=0, rtol=0)


def test_runs_without_gradients_go_in_chunks_that_equal_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from qtransfer.quantum import fused

    circuit = make_circuit("tutorial", 8, 3)
    x, w = torch.rand(37, 8, dtype=torch.float64), torch.randn(circuit.n_weights, dtype=torch.float64)
    whole = CompiledCircuit(circuit, dtype=torch.float64)(x, w)
    monkeypatch.setattr(fused, "EVAL_AMPLITUDES", 2**8 * 5)  # 5 samples per chunk
    with torch.no_grad():
        torch.testing.assert_close(CompiledCircuit(circuit, dtype=torch.float64)(x, w), whole, atol=1e-13, rtol=0)


_PEAK = textwrap.dedent("""
    import json, sys, torch
    from qtransfer import CompiledCircuit, make_circuit
    n, depth, batch = map(int, sys.argv[1:4])
    circuit = make_circuit("tutorial", n, depth)
    compiled = CompiledCircuit(circuit)
    x, w = torch.rand(batch, n), 0.01 * torch.randn(circuit.n_weights)
    def vmhwm():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024
    def step():
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        compiled(xi, wi).sum().backward()
    step()  # the first step also loads libraries' one-time buffers; training's steady state is the second
    compiled.engine.pool.free.clear()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = vmhwm()
    step()
    print(json.dumps({"peak": vmhwm() - base}))
""")


SOURCE = str(Path(qtransfer.__file__).parents[1])  # the children import the qtransfer this test imported


def _peak_bytes(n: int, depths: tuple[int, ...], batch: int) -> list[int]:
    """The backward pass's peak memory at each depth, each in a fresh process; the processes (one thread each)
    run side by side, as a process's peak memory is its own."""
    env = {"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": SOURCE}
    procs = [subprocess.Popen([sys.executable, "-c", _PEAK, str(n), str(depth), str(batch)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for depth in depths]
    peaks = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        peaks.append(json.loads(stdout.strip().splitlines()[-1])["peak"])
    return peaks


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from /proc (Linux)")
def test_backward_memory_does_not_grow_with_depth_and_stays_under_the_estimate() -> None:
    n, batch = 17, 32
    state = 2**n * batch * 4
    shallow, deep = _peak_bytes(n, (2, 20), batch)
    assert deep < 2 * shallow, (shallow, deep)  # autograd through every gate would keep ~250 states here
    assert deep < 8 * state
    estimate = circuit_bytes(make_circuit("tutorial", n, 20), batch)
    assert max(shallow, deep) <= estimate, (shallow, deep, estimate)


@pytest.mark.gpu
def test_the_same_code_runs_on_cuda() -> None:
    circuit = make_circuit("strongly_entangling", 9, 2)
    x, w = torch.rand(6, 9, dtype=torch.float64), torch.randn(circuit.n_weights, dtype=torch.float64)
    results = []
    for device in ("cpu", "cuda"):
        xi, wi = x.to(device).requires_grad_(), w.to(device).requires_grad_()
        out = CompiledCircuit(circuit, dtype=torch.float64, device=device)(xi, wi)
        out.square().sum().backward()
        results.append([t.detach().cpu() for t in (out, xi.grad, wi.grad)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_two_forward_passes_before_one_backward_keep_their_own_states() -> None:
    circuit = make_circuit("tutorial", 8, 3)
    compiled = CompiledCircuit(circuit, dtype=torch.float64)
    reference = CompiledCircuit(circuit, dtype=torch.float64, method="gates")
    x1, x2 = torch.rand(4, 8, dtype=torch.float64), torch.rand(4, 8, dtype=torch.float64)
    grads = []
    for sim in (compiled, reference):
        w = torch.randn(circuit.n_weights, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(1)).requires_grad_()
        (sim(x1, w).square().sum() + 3 * sim(x2, w).sum()).backward()  # gradient accumulation over two batches
        grads.append(w.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=TOL, rtol=0)


def test_density_matrices_without_noise_equal_the_statevector_at_seven_qubits() -> None:
    from qtransfer.quantum.backends import TorchBackend

    circuit = make_circuit("strongly_entangling", 7, 3)
    x = torch.rand(3, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    results = []
    for backend in (TorchBackend(), TorchBackend(noise="depolarizing=1e-300")):
        out = backend(circuit, x, w)
        results.append([out, *torch.autograd.grad((out * torch.arange(7.0, dtype=torch.float64)).sum(), [x, w])])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


@pytest.mark.parametrize("noise", [None, "depolarizing=0.01"])
def test_a_second_backward_through_one_fused_run_is_refused_not_wrong(noise) -> None:
    """The adjoint sweep consumes the states the forward kept (on the density path, its checkpoints): a second
    backward through the same run must fail loudly rather than return another gradient."""
    from qtransfer.quantum.backends import TorchBackend

    circuit = make_circuit("tutorial", 8, 2)
    backend = TorchBackend(method="fused", noise=noise)
    weights = torch.randn(circuit.n_weights, dtype=torch.float64, requires_grad=True)
    out = backend(circuit, torch.randn(3, circuit.n_inputs, dtype=torch.float64), weights).sum()
    out.backward(retain_graph=True)
    first = weights.grad.clone()
    with pytest.raises(RuntimeError, match="differentiated once per forward pass"):
        out.backward()
    assert torch.equal(weights.grad, first)
