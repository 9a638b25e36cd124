#!/usr/bin/env python3
"""flowguard witness benchmark (issue 18): `add-checkpoint`/s on loopback, one log, SQLite
state. Bar: at least 500/s.

    python bench/bench_witness.py                 # 2,000 submissions per run, median of 3
    python bench/bench_witness.py --quick         # 300 submissions, 1 run
    python bench/bench_witness.py --json /tmp/witness.json

Method: a log of ``--submissions`` entries is built in memory and a signed checkpoint for
every size 1..N with the consistency proof from the size before (the log growing one entry
at a time, the worst case: every submission moves the witness and is persisted). The
witness runs as ``flowguard witness serve`` in its own process (uvicorn, SQLite state in a
fresh file, WAL); one client on one keep-alive connection submits the checkpoints in order,
each waiting for its cosignature (which it checks: status 200 and one cosignature line).
Each run uses a fresh origin (its own log key), so it starts from an empty witness. Also
reported, as a ceiling and a baseline: the same rules in-process (`Witness.add_checkpoint`,
no HTTP) and a bare HTTP round trip to the witness's `/healthz` on the same connection.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flowguard.audit.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from flowguard.audit.cosignature import Cosigner, generate_cosigner_key  # noqa: E402
from flowguard.audit.entries import write_secret  # noqa: E402
from flowguard.audit.merkle import (  # noqa: E402
    CompactRange,
    MemoryNodeStore,
    consistency_proof,
    leaf_hash,
)
from flowguard.audit.note import Signer, Verifier, generate_key  # noqa: E402
from flowguard.witness.service import Witness  # noqa: E402
from flowguard.witness.state import WitnessState  # noqa: E402

BAR = 500.0


def submissions(origin: str, count: int) -> tuple[str, list[bytes]]:
    """The log's verifier key and the add-checkpoint bodies for sizes 1..count."""
    skey, vkey = generate_key(origin)
    signer = Signer(skey)
    nodes, tree = MemoryNodeStore(), CompactRange()
    bodies = []
    for size in range(1, count + 1):
        nodes.store(tree.append(leaf_hash(f'{{"entry":{size}}}'.encode())))
        old = size - 1
        proof = consistency_proof(old, size, nodes) if old else []
        note = sign_checkpoint(Checkpoint(origin, size, tree.root()), [signer])
        lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
        bodies.append(f"old {old}\n{lines}\n{note}".encode())
    return vkey, bodies


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit("the witness did not start")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the witness did not answer")


def over_http(port: int, bodies: list[bytes]) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/add-checkpoint", body=body)
        response = conn.getresponse()
        text = response.read()
        if response.status != 200 or not text.startswith("\u2014 ".encode()):
            raise SystemExit(f"the witness refused a submission: {response.status} {text!r}")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(bodies) / elapsed


def round_trips(port: int, count: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    for _ in range(count):
        conn.request("GET", "/healthz")
        conn.getresponse().read()
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


def in_process(folder: Path, origin: str, vkey: str, bodies: list[bytes]) -> float:
    skey, _ = generate_cosigner_key("witness.bench.test/inproc")
    state = WitnessState.open(f"sqlite:///{folder / (origin.replace('/', '_') + '.db')}")
    witness = Witness(Cosigner(skey), {origin: [Verifier(vkey)]}, state)
    started = time.perf_counter()
    for body in bodies:
        if witness.add_checkpoint(body).status != 200:
            raise SystemExit("the in-process witness refused a submission")
    elapsed = time.perf_counter() - started
    state.close()
    return len(bodies) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", dest="json_file")
    args = parser.parse_args()
    count, repeat = (300, 1) if args.quick else (args.submissions, args.repeat)

    logs = [submissions(f"bench.example/log-{run}", count) for run in range(repeat)]
    inproc_logs = [submissions(f"bench.example/inproc-{run}", count) for run in range(repeat)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        key_file = folder / "witness.key"
        skey, _ = generate_cosigner_key("witness.bench.test/w1")
        write_secret(key_file, skey + "\n")
        port = free_port()
        command = [sys.executable, "-m", "flowguard", "witness", "serve", "--key",
                   str(key_file), "--state", f"sqlite:///{folder / 'state.db'}",
                   "--port", str(port)]
        for run, (vkey, _) in enumerate(logs):
            command += ["--log", f"bench.example/log-{run}={vkey}"]
        server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            wait_up(port, server)
            http_rates = [over_http(port, bodies) for _, bodies in logs]
            trip_rates = [round_trips(port, count) for _ in range(repeat)]
        finally:
            server.terminate()
            server.wait(10)
        inproc_rates = [in_process(folder, f"bench.example/inproc-{run}", vkey, bodies)
                        for run, (vkey, bodies) in enumerate(inproc_logs)]

    result = {
        "submissions_per_run": count, "runs": repeat,
        "add_checkpoint_per_s_http": statistics.median(http_rates),
        "add_checkpoint_per_s_in_process": statistics.median(inproc_rates),
        "healthz_round_trips_per_s": statistics.median(trip_rates),
        "all_http_runs": http_rates, "bar": BAR,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
    }
    print(f"witness add-checkpoint, one log, SQLite state, {count} submissions, median of "
          f"{repeat}:")
    rate = result["add_checkpoint_per_s_http"]
    verdict = "met" if rate >= BAR else "MISSED"
    print(f"  over HTTP (loopback, keep-alive)   {rate:8.0f}/s   bar {BAR:.0f}/s: {verdict}")
    print(f"  in process (no HTTP)               "
          f"{result['add_checkpoint_per_s_in_process']:8.0f}/s")
    print(f"  baseline: GET /healthz round trip  {result['healthz_round_trips_per_s']:8.0f}/s")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
