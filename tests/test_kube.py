"""``tether submit --on kubernetes``: the Indexed Job and its Secret, checked against the
Kubernetes JSON schemas that ``kubernetes-validate`` bundles (no cluster needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether._kube import indexed_job, to_yaml, token_secret
from tether.cli import build_parser

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
yaml = pytest.importorskip("yaml", reason="PyYAML comes with kubernetes-validate")

K8S_VERSION = "1.37.0"
REPO = Path(__file__).resolve().parents[1]


def _valid(doc: dict[str, Any]) -> None:
    kv.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "members",
    [
        [{} for _ in range(32)],
        [{"lr": "0.1", "bs": "32"}, {"lr": "0.01", "bs": "64"}],
        [{}],
    ],
)
def test_the_indexed_job_is_valid_for_kubernetes(members: list[dict[str, str]]) -> None:
    job = indexed_job(
        name="Sweep_1", command=["python", "train.py", "--seed", "{index}"], members=members,
        image="registry.example.com/tether:0.1", pool_url="http://tether-pool.tether:8600",
        namespace="ml", parallelism=8,
    )  # fmt: skip
    _valid(job)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"]) == ("Indexed", len(members))
    assert spec["parallelism"] == min(8, len(members))
    assert job["metadata"]["name"] == "tether-sweep-1"
    # The pod's command is one tether's own parser accepts.
    container = spec["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert (args.group_command, args.name) == ("member", "Sweep_1")
    assert args.command[-4:] == ["python", "train.py", "--seed", "{index}"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TETHER_POOL_TOKEN_FILE"] == "/var/run/tether/token"
    if any(members):
        assert json.loads(env["TETHER_GROUP_PARAMS"]) == members


def test_the_token_goes_in_a_secret_never_in_the_job() -> None:
    token = "tu_0123456789ab_" + "s" * 43
    secret = token_secret("sweep", token, namespace="ml")
    _valid(secret)
    job = indexed_job(name="sweep", command=["python", "t.py"], members=[{}] * 4,
                      image="tether", pool_url="http://pool:8600")  # fmt: skip
    assert token not in json.dumps(job)
    volume = job["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]


def test_the_validator_is_live() -> None:
    job = indexed_job(name="sweep", command=["python"], members=[{}], image="tether",
                      pool_url="http://pool:8600")  # fmt: skip
    job["spec"]["completionMode"] = 3
    with pytest.raises(kv.ValidationError):
        _valid(job)


@pytest.mark.parametrize(
    "text",
    ["plain", "with: colon", "# hash", "quote \" and ' both", "new\nline", "{index}", "",
     "yes", "null", "123", "ünïcode ✓", "- dash", "  spaces  "],
)  # fmt: skip
def test_the_yaml_reads_back_as_the_manifest(text: str) -> None:
    doc = {"a": text, "b": [text, {"c": [text, 1, True, None]}, []], "d": {}, "e": 0.5}
    assert list(yaml.safe_load_all(to_yaml([doc, {"k": text}]))) == [doc, {"k": text}]


def test_submit_dry_run_prints_a_valid_job_and_no_token(tmp_path: Path) -> None:
    token = "tu_0123456789ab_" + "t" * 43
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = str(REPO / "src")
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tether", "submit", "--on", "kubernetes", "--dry-run",
         "--pool", "http://tether-pool.tether:8600", "--token", token,
         "--count", "16", "--gpus", "0.25", "--name", "sweep", "--image", "tether:0.1",
         "--", "python", "train.py", "--seed", "{index}"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert [d["kind"] for d in docs] == ["Job"]
    _valid(docs[0])
    assert docs[0]["spec"]["completions"] == 16
    assert "kubectl create secret generic tether-sweep-pool-token" in done.stdout
