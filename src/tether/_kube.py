"""A sweep as a Kubernetes Indexed Job: the manifests ``tether submit --on kubernetes`` makes.

Kubernetes runs the members; the pool still places their slices, as one group.
The Job has ``completionMode: Indexed`` and ``completions`` = the group's
members; the pod of index ``i`` (``JOB_COMPLETION_INDEX``, which Kubernetes
sets in each pod) runs::

    tether group member --remote MODULE GROUP -- COMMAND...

which reads its index from ``JOB_COMPLETION_INDEX``, replaces ``{index}`` (and
each ``{NAME}`` of the parameter grid, handed over in ``TETHER_GROUP_PARAMS``)
in COMMAND, asks the pool for member ``i``'s address and a fresh ticket,
renews that member's lease while COMMAND runs against it (``tether run
--connect``), and releases it at the end. The pool's URL is in the pod spec;
the API token that reads the group's tickets is in a Secret, mounted as a file
(``TETHER_POOL_TOKEN_FILE``), never in the spec.

Pure: builds dicts and text, runs nothing. The YAML is written by hand (every
string as a JSON string, which YAML reads as a double-quoted scalar), so
nothing outside the standard library is needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["indexed_job", "job_name", "to_yaml", "token_secret"]

#: Where the Secret's token is mounted in the pods.
TOKEN_DIR = "/var/run/tether"


def job_name(name: str) -> str:
    """A DNS-1123 label from a group name: ``tether-sweep`` (lower case, ``-``, 52 chars
    at most so that pod names built from it stay under 63)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "group"
    return ("tether-" + label)[:52].rstrip("-")


def token_secret(name: str, token: str, *, namespace: str | None = None) -> dict[str, Any]:
    """The Secret that holds the pool API token the pods read their tickets with."""
    meta: dict[str, Any] = {"name": f"{job_name(name)}-pool-token", "labels": _labels(name)}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "stringData": {"token": token},
    }


def indexed_job(
    *,
    name: str,
    command: Sequence[str],
    members: Sequence[Mapping[str, str]],
    image: str,
    pool_url: str,
    remote: Sequence[str] = ("torch",),
    namespace: str | None = None,
    parallelism: int | None = None,
    backoff_limit_per_index: int = 0,
) -> dict[str, Any]:
    """The Indexed Job whose pod ``i`` runs member ``i`` of group ``name``.

    ``members``: each member's parameters (all empty for ``--count``);
    ``parallelism``: pods at once (default: every member). A failed member is not
    retried (``backoffLimitPerIndex`` 0 by default): its lease was released when
    it ended, and a retry would need a new slice.
    """
    count = len(members)
    if count < 1:
        raise ValueError("a job needs at least one member")
    env: list[dict[str, Any]] = [
        {"name": "TETHER_POOL", "value": pool_url},
        {"name": "TETHER_POOL_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"},
    ]
    if any(members):
        env.append({"name": "TETHER_GROUP_PARAMS", "value": json.dumps([dict(m) for m in members])})
    args = ["group", "member"]
    for module in remote:
        args += ["--remote", module]
    args += [name, "--", *command]  # options first: COMMAND takes all after the name
    meta: dict[str, Any] = {"name": job_name(name), "labels": _labels(name)}
    if namespace:
        meta["namespace"] = namespace
    secret = f"{job_name(name)}-pool-token"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": min(parallelism or count, count),
            "backoffLimitPerIndex": backoff_limit_per_index,
            "maxFailedIndexes": count,
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "member",
                            "image": image,
                            "command": ["tether"],
                            "args": args,
                            "env": env,
                            "volumeMounts": [
                                {"name": "pool-token", "mountPath": TOKEN_DIR, "readOnly": True}
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": [
                        {
                            "name": "pool-token",
                            "secret": {"secretName": secret, "defaultMode": 0o400},
                        }
                    ],
                },
            },
        },
    }


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "tether-group", "tether.dev/group": job_name(name)[7:]}


def to_yaml(docs: Sequence[Mapping[str, Any]]) -> str:
    """``docs`` as one YAML stream (``---`` between documents)."""
    return "---\n".join(_block(doc, 0) for doc in docs)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(str(value))  # a JSON string is a YAML double-quoted scalar


def _block(value: Any, indent: int) -> str:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        if not value:
            return pad + "{}\n"
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{_scalar(key)}:\n{_block(item, indent + 2)}")
            else:
                empty = "{}" if isinstance(item, Mapping) else "[]"
                text = empty if isinstance(item, Mapping | list) else _scalar(item)
                lines.append(f"{pad}{_scalar(key)}: {text}\n")
        return "".join(lines)
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping | list) and item:
                inner = _block(item, indent + 2)
                lines.append(f"{pad}- {inner[indent + 2 :]}")
            elif isinstance(item, Mapping | list):
                lines.append(f"{pad}- {'{}' if isinstance(item, Mapping) else '[]'}\n")
            else:
                lines.append(f"{pad}- {_scalar(item)}\n")
        return "".join(lines)
    return pad + _scalar(value) + "\n"
