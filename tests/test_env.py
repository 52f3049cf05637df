"""The rule for which of the client's environment variables a worker sees."""

from __future__ import annotations

from tether._env import MAX_VARS, forwarded


def test_framework_settings_travel_and_nothing_else() -> None:
    env = {
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
        "PYTORCH_JIT": "0",
        "CUDA_VISIBLE_DEVICES": "0,1,2,3",  # would widen a slice
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "TORCH_DEVICE_BACKEND_AUTOLOAD": "0",
        "LD_PRELOAD": "/tmp/evil.so",
        "PYTHONPATH": "/tmp",
        "HOME": "/root",
        "TETHER_TOKEN": "secret",
    }
    assert forwarded(env) == {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTORCH_JIT": "0"}


def test_what_a_hostile_peer_sends_is_bounded() -> None:
    env: dict[object, object] = {f"TORCH_X{i}": "v" for i in range(MAX_VARS * 2)}
    env[1] = "not a name"
    env["TORCH_BIG"] = "x" * 100_000
    env["TORCH_NUL"] = "a\0b"
    out = forwarded(env)
    assert len(out) == MAX_VARS
    assert all(isinstance(k, str) and k.startswith("TORCH_X") for k in out)
