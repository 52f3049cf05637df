"""What call sites learn (client/_predict.py, _sites.py), through a real ``tether run``.

A method of the script's class pages in the globals it reads on its first
call; the calls after it need nothing from the client and are pipelined. A
method that reads the script's own object every time waits every time, so it
sees each value the script assigned. Two calls of one method on one line that
return an array and a number are learnt apart, by their place; an array's
transpose is pipelined. The scripts count their round trips (the session's
``stats``); every number is checked against the same code run here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tests.e2e.e2e_harness import run_json_script

CODE = '''
import types
import torch

SCALE = 0.5
cfg = types.SimpleNamespace(shift=0.0)


class Step(torch.nn.Module):
    """Reads a global (paged in once) and, on some calls, another one."""

    def forward(self, x, late=False):
        if late:
            return x * SCALE + offset()
        return x * SCALE


class Shifted(torch.nn.Module):
    """Reads the script's own object on every call."""

    def forward(self, x):
        return x + cfg.shift


def offset():
    return 1.0


def run(counter):
    out = {}
    x = torch.ones(3)
    step, shifted = Step(), Shifted()
    before = counter()
    for _ in range(30):
        x = step(x)
    out["paged_in_once"] = counter() - before
    before = counter()
    for i in range(30):
        x = step(x, late=(i == 10))  # a branch reads a global first while pipelined
    out["late_global"] = counter() - before
    out["x"] = x.tolist()
    before = counter()
    ys = []
    for i in range(10):
        cfg.shift = float(i)
        ys.append(shifted(torch.zeros(2)))
    out["every_call_reads"] = counter() - before
    out["ys"] = [y.tolist() for y in ys]
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    before = counter()
    out["names"] = [name for name, _ in model.named_parameters()]
    out["count"] = len(list(model.parameters()))
    out["walks"] = counter() - before
    ix = torch.arange(40) * 3
    before = counter()
    out["ints"] = [int(i) for i in ix] + [i.item() for i in ix]
    out["item_reads"] = counter() - before
    return out
'''

NUMPY_CODE = '''
import numpy as np


def run(counter):
    """Mahalanobis terms as ML-From-Scratch's Gaussian mixture writes them."""
    out = {}
    rng = np.random.RandomState(0)
    samples, mean = rng.rand(40, 3), np.full(3, 0.5)
    cov = np.eye(3) * 2.0
    terms = [float((s - mean).T.dot(cov).dot(s - mean)) for s in samples[:5]]
    before = counter()
    for s in samples[5:]:
        terms.append(float((s - mean).T.dot(np.linalg.pinv(cov)).dot(s - mean)))
    out["dots"] = counter() - before
    out["terms"] = terms
    return out
'''

RUNNER = """
import json
from tether.client import _bootstrap

session = _bootstrap._session
print(json.dumps(run(lambda: session.stats["sync"])))
"""


def _remote(folder: Path, code: str, module: str) -> dict[str, Any]:
    result: dict[str, Any] = run_json_script(folder, code + RUNNER, module)
    return result


def _local(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "site_learning_local"}
    exec(code, namespace)
    result: dict[str, Any] = namespace["run"](lambda: 0)
    return result


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _remote(tmp_path_factory.mktemp("touching"), CODE, "torch")


@pytest.fixture(scope="module")
def local() -> dict[str, Any]:
    result = _local(CODE)
    assert torch.is_tensor(torch.ones(1))  # the code above ran on this process's torch
    return result


@pytest.fixture(scope="module")
def numpy_out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _remote(tmp_path_factory.mktemp("places"), NUMPY_CODE, "numpy")


def test_the_results_are_the_local_ones(out: dict[str, Any], local: dict[str, Any]) -> None:
    assert out["x"] == local["x"]
    assert out["ys"] == local["ys"]  # each call saw the shift the script had just set


def test_a_method_that_paged_in_its_globals_is_pipelined_after(out: dict[str, Any]) -> None:
    # The first call pages in SCALE and waits; so does the next, to see that it
    # needs nothing from the client. Before, every one of the 30 calls waited.
    assert out["paged_in_once"] <= 3, out["paged_in_once"]


def test_a_branch_that_reads_a_new_global_costs_one_more_wait(out: dict[str, Any]) -> None:
    # The pipelined call that paged in offset() is answered late; the next call
    # waits to be sure, and the rest are pipelined again.
    assert out["late_global"] <= 3, out["late_global"]


def test_a_method_that_reads_script_state_every_call_waits_every_call(
    out: dict[str, Any],
) -> None:
    assert out["every_call_reads"] >= 10, out["every_call_reads"]


def test_two_calls_on_one_line_that_return_apart_are_learnt_apart(
    numpy_out: dict[str, Any],
) -> None:
    assert numpy_out["terms"] == _local(NUMPY_CODE)["terms"]
    # One wait a sample (35): float() of the number the second dot makes, and a
    # few more while the sites learn. Before, the transpose and both dots waited
    # too (the dots shared a site that saw an array one time and a number the
    # next): three a sample.
    assert numpy_out["dots"] <= 35 + 10, numpy_out["dots"]


def test_a_modules_parameters_come_in_one_reply(out: dict[str, Any], local: dict[str, Any]) -> None:
    assert out["names"] == local["names"] and out["count"] == local["count"] == 4
    # Two round trips a walk here (the method's first call, which its site learns
    # from, and the walk); before, one more for each parameter and for the end: 14.
    assert out["walks"] <= 4, out["walks"]


def test_the_items_of_a_small_tensor_come_with_their_values(
    out: dict[str, Any], local: dict[str, Any]
) -> None:
    assert out["ints"] == local["ints"]
    # One round trip a walk (the items and their values); before, one an item: 80.
    assert out["item_reads"] <= 2, out["item_reads"]
