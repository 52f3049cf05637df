"""Time from a command's start to the script's first line, with and without a pool.

Not a test (nothing here asserts a time): run it by hand,
``python tests/e2e/measure_pool_startup.py [N]``. It starts a pool (SQLite) and
one acceptor on loopback, then runs a torch script N times per case, round
robin so that every case sees the same background load, and prints medians;
then the latency of one slice request that is placed at once. docs/deploy.md
records the figures.
"""

# ruff: noqa
import os, statistics, subprocess, sys, tempfile, time, signal
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))
from tether.poolapi import PoolClient

root = Path(tempfile.mkdtemp(prefix="tether-startup-"))
env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
env["PYTHONPATH"] = str(REPO / "src")
env["XDG_CONFIG_HOME"] = str(root / "cfg")
py = sys.executable
procs = []


def spawn(argv, name):
    p = subprocess.Popen(
        argv,
        env=env,
        stdout=open(root / f"{name}.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.append(p)
    return p


def wait(path):
    t = time.monotonic()
    while not path.exists():
        assert time.monotonic() - t < 60
        time.sleep(0.05)
    return path.read_text().strip()


try:
    spawn(
        [
            py,
            "-m",
            "tether",
            "pool",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(root / "p.db"),
            "--bootstrap-token-file",
            str(root / "adm"),
            "--ready-file",
            str(root / "url"),
        ],
        "pool",
    )
    url = wait(root / "url")
    adm = PoolClient(url, wait(root / "adm"))
    for _ in range(100):
        try:
            adm.me()
            break
        except Exception:
            time.sleep(0.05)
    adm.create_team("t")
    adm.create_user("u", teams=["t"])
    tok = adm.create_token(user="u")["token"]
    (root / "nt").write_text(adm.create_token(kind="node", node="n")["token"])
    spawn(
        [
            py,
            "-m",
            "tether",
            "serve",
            "--listen",
            "tcp://127.0.0.1:0",
            "--pool",
            url,
            "--node-token-file",
            str(root / "nt"),
            "--name",
            "n",
            "--ready-file",
            str(root / "acc"),
        ],
        "acc",
    )
    wait(root / "acc")
    script = root / "s.py"
    script.write_text("import torch\nprint('first', torch.ones(2).sum().item(), flush=True)\n")

    def ttfl(argv):
        t = time.monotonic()
        p = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=root
        )
        line = p.stdout.readline()
        dt = time.monotonic() - t
        p.wait(60)
        assert line.startswith(b"first"), line
        return dt

    cases = {
        "plain python (local torch)": [py, str(script)],
        "tether run (embedded acceptor)": [
            py,
            "-m",
            "tether",
            "run",
            "--remote",
            "torch",
            "--",
            py,
            str(script),
        ],
        "tether run --pool --gpus 0.5": [
            py,
            "-m",
            "tether",
            "run",
            "--pool",
            url,
            "--pool-token",
            tok,
            "--gpus",
            "0.5",
            "--remote",
            "torch",
            "--",
            py,
            str(script),
        ],
    }
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for argv in cases.values():
        ttfl(argv)  # warm the page cache
    res = {k: [] for k in cases}
    for _ in range(n):  # round robin: every case sees the same background load
        for name, argv in cases.items():
            res[name].append(ttfl(argv))
    for name, xs in res.items():
        print(
            f"{name:34s} median {statistics.median(xs):.2f}s  min {min(xs):.2f}  max {max(xs):.2f}  (n={n})",
            flush=True,
        )
    c = PoolClient(url, tok)
    ys = []
    for _ in range(20):
        t = time.monotonic()
        s = c.request_slice(fraction=0.5, wait=False)
        ys.append(time.monotonic() - t)
        c.release(s["id"])
    print(
        f"pool request (placed at once, ticket) median {statistics.median(ys) * 1000:.0f} ms (n=20)"
    )
finally:
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(10)
