"""What a test's markers must say, read from the code it runs: the test function, its fixtures and the helpers in
tests/ they call (not qtransfer's own code, whose worker pools are its business)."""
from __future__ import annotations

import inspect
import types
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
# Names whose use starts another process; and the module torchrun runs.
SPAWNS = frozenset({"subprocess", "Popen", "multiprocessing", "NotebookClient"})
TORCHRUN = "torch.distributed.run"
# Where conftest keeps every collected test's problems, found before -m and -k deselect any (tests/test_markers.py).
PROBLEMS = pytest.StashKey[list[str]]()


def functions_run(item: pytest.Item) -> list[object]:
    """The test function and every fixture function it uses."""
    info = getattr(item, "_fixtureinfo", None)
    fixtures = [d.func for defs in info.name2fixturedefs.values() for d in defs] if info else []
    return [getattr(item, "obj", None), *fixtures]


def code_reached(functions: Iterable[object]) -> Iterator[types.CodeType]:
    """Code objects of `functions`, of the functions and lambdas nested in them, and of the functions defined in
    tests/ that they name, transitively."""
    stack: list[tuple[types.CodeType, dict[str, object]]] = [
        (f.__code__, f.__globals__) for f in map(inspect.unwrap, functions) if isinstance(f, types.FunctionType)]
    seen: set[types.CodeType] = set()
    while stack:
        code, scope = stack.pop()
        if code in seen or not Path(code.co_filename).resolve().is_relative_to(TESTS):
            continue
        seen.add(code)
        yield code
        stack += [(const, scope) for const in code.co_consts if isinstance(const, types.CodeType)]
        for name in code.co_names:
            target = scope.get(name)
            if isinstance(target, types.FunctionType):
                stack.append((target.__code__, target.__globals__))


def starts_processes(code: list[types.CodeType]) -> bool:
    """Whether the code names subprocess, Popen, multiprocessing or a notebook kernel's client."""
    return any(SPAWNS & set(c.co_names) for c in code)


def runs_torchrun(code: list[types.CodeType]) -> bool:
    """Whether the code holds the module name that torchrun runs (a constant list of arguments is a tuple)."""
    return any(TORCHRUN in _constants(c.co_consts) for c in code)


def _constants(consts: tuple[object, ...]) -> Iterator[object]:
    for const in consts:
        if isinstance(const, tuple | frozenset):
            yield from _constants(tuple(const))
        else:
            yield const


def problems(item: pytest.Item, real_data: frozenset[str], expensive: frozenset[str]) -> list[str]:
    """What is wrong with `item`'s markers, one line each; none when they are right."""
    marks = {m.name for m in item.iter_markers()}
    used = set(getattr(item, "fixturenames", ()))
    code = list(code_reached(functions_run(item)))
    torchrun = runs_torchrun(code)
    needed = {
        "real_data": (bool(used & real_data), f"uses {sorted(used & real_data)}"),
        "slow": (bool(used & expensive), f"uses {sorted(used & expensive)}"),
        "subprocess": (torchrun or starts_processes(code), "starts a process"),
        "distributed": (torchrun, f"runs {TORCHRUN}"),
    }
    return [f"{item.nodeid} {why} but is not marked {name}"
            for name, (need, why) in needed.items() if need and name not in marks]
