"""``tether submit --on kubernetes``: the sweep's members as a Kubernetes Indexed Job.

A thin shell over :mod:`tether._kube` (the manifests) and the pool client. With
``--dry-run`` it prints the Job as YAML and asks the pool for nothing. Otherwise
it asks the pool for the group (placed as one unit, or queued as one), hands
the API token to the cluster as a Secret and creates the Job with ``kubectl
apply -f -`` (the Secret goes through kubectl's standard input, never into a
file, an argument or the output), then stays to renew the members' leases until
every member has ended, showing the group's state; Ctrl-C cancels the group and
deletes the Job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from tether._kube import indexed_job, job_name, to_yaml, token_secret

__all__ = ["submit_kubernetes"]

#: Seconds between two renewals of the members' leases while the Job runs.
RENEW_S = 10.0


def submit_kubernetes(
    args: argparse.Namespace,
    command: list[str],
    members: list[dict[str, str]],
    request: dict[str, Any],
    name: str,
) -> int:
    from tether._config import resolve_pool

    cfg = resolve_pool(args.pool, args.token, token_file=args.token_file, ca=args.tls_ca)
    pool_url = os.environ.get("TETHER_POOL_IN_CLUSTER") or cfg.url
    if not pool_url:
        print("tether: error: no pool URL: --pool URL (as the pods reach it), TETHER_POOL, "
              "or the config file", file=sys.stderr)  # fmt: skip
        return 2
    remote = sorted({m for item in (args.remote or ["torch"]) for m in item.split(",") if m})
    job = indexed_job(
        name=name,
        command=command,
        members=members,
        image=args.image or os.environ.get("TETHER_IMAGE") or "tether",
        pool_url=pool_url,
        remote=remote,
        namespace=args.namespace,
        parallelism=args.parallel,
    )
    if args.dry_run:
        secret = f"{job_name(name)}-pool-token"
        ns = f" -n {args.namespace}" if args.namespace else ""
        sys.stdout.write(
            f"# The pods read the pool API token from Secret {secret} (key: token):\n"
            f"#   kubectl{ns} create secret generic {secret} --from-file=token=PATH\n"
        )
        sys.stdout.write(to_yaml([job]))
        return 0
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("tether: error: kubectl is not installed here: run with --dry-run to print the "
              "Job, and apply it where kubectl is", file=sys.stderr)  # fmt: skip
        return 2
    if not cfg.token:
        print("tether: error: no API token (--token-file, TETHER_POOL_TOKEN)", file=sys.stderr)
        return 2
    from tether.cli import error_line
    from tether.cli._poolcli import client_from

    client = client_from(args)
    body = dict(request, name=name, max_count=len(members), min_count=args.min_count)
    try:
        group = client.request_group(**body)
    except Exception as exc:
        from tether._errors import TetherError

        if not isinstance(exc, TetherError):
            raise
        print(error_line(exc), file=sys.stderr)
        return 1
    namespace = ["-n", args.namespace] if args.namespace else []
    manifest = to_yaml([token_secret(name, cfg.token, namespace=args.namespace), job])
    applied = subprocess.run(
        [kubectl, *namespace, "apply", "-f", "-"], input=manifest, text=True, check=False
    )
    if applied.returncode != 0:
        client.cancel_group(group["id"])
        print("tether: error: kubectl apply failed; the group was cancelled", file=sys.stderr)
        return 1
    print(f"tether: group {name} ({group['id']}) {group['state']}; "
          f"job {job_name(name)} created", file=sys.stderr, flush=True)  # fmt: skip
    try:
        while True:
            group = client.group(group["id"])
            print(f"tether: group {name} {group['state']}: {group['running']} running, "
                  f"{group['ended']} ended", file=sys.stderr, flush=True)  # fmt: skip
            if group["state"] == "ended":
                break
            for m in group.get("members", []):
                if m["state"] == "placed":
                    client.heartbeat(m["id"])
            time.sleep(RENEW_S)
    except KeyboardInterrupt:
        client.cancel_group(group["id"])
        subprocess.run([kubectl, *namespace, "delete", "job", job_name(name)], check=False)
        return 130
    return 0
