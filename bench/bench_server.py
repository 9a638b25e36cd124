"""Load test of `flowguard serve` from a second process on loopback (wrk, from Debian).

Sets up the shipped example (SQLite registry and audit log, signing and pseudonym keys, a
token), starts the real server, and drives it with wrk: single checks (each a unique
X-Request-Id, each audited), the batch endpoint, and GET /healthz as the baseline the
framework alone allows in the same run. Prints requests/s, flows/s and latency
percentiles, each with its ratio to the baseline.

    python bench/bench_server.py [--seconds 10] [--connections 8] [--workers 1] [--batch 500]
    python bench/bench_server.py --beside-batches   # issue 13: single checks alone, then
        # while one other client (wrk -c1) loops maximal batches (1,000 flows x every one of
        # the policy's categories); medians of --repeat runs, and their ratio
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "policies" / "aalborg-aktiv"
FLOW = {"sender": "job-consultant", "recipient": "cafe-manager", "subject": "citizen-0042",
        "data": ["identity.name"], "purpose": "job-matching.employer-contact",
        "subprocess": "co-delivery"}
SUBJECTS = ["citizen-0042", "citizen-0107", "citizen-0233", "citizen-0318", "citizen-0451",
            "citizen-0512", "citizen-0609"]

LUA = """
counter = 0
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
request = function()
  counter = counter + 1
  local headers = {}
  headers["Authorization"] = "Bearer TOKEN"
  headers["Content-Type"] = "application/json"
  headers["X-Request-Id"] = "RUN-" .. tid .. "-" .. counter
  return wrk.format("POST", "PATH", headers, BODIES[(counter % #BODIES) + 1])
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# the flowguard of this checkout, not whichever is installed (the commands run elsewhere)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def flowguard(*args: str, cwd: Path) -> str:
    return subprocess.run([sys.executable, "-m", "flowguard", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, env=ENV).stdout.strip()


def lua_string(value: str) -> str:
    return "[[" + value + "]]"


def wrk(url: str, seconds: int, connections: int, script: Path | None) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])}  # type: ignore[index]
    for pct in ("50", "90", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", text)
        if match:
            scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[match[2]]
            figures[f"p{pct}"] = float(match[1]) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    figures["non2xx"] = float(errors[1]) if errors else 0.0
    return figures


def yaml_categories(policy: Path) -> list[str]:
    from flowguard.policy import load_policy

    return list(load_policy(policy).data_categories)


def fresh_ids(script: Path) -> None:
    script.write_text(re.sub(r'"[0-9a-f]{32}-', f'"{uuid.uuid4().hex}-', script.read_text()))


def beside(args: argparse.Namespace, base: str, scripts: dict[str, Path],
           categories: int) -> None:
    """Single checks alone, then beside one client looping maximal batches."""
    alone: list[dict[str, float]] = []
    loaded: list[dict[str, float]] = []
    batches: list[float] = []
    for _ in range(args.repeat):
        for script in scripts.values():
            fresh_ids(script)
        alone.append(wrk(base, args.seconds, args.connections, scripts["single"]))
        fresh_ids(scripts["single"])
        looping = subprocess.Popen(
            ["wrk", "-t1", "-c1", f"-d{args.seconds + 2}s", "-s", str(scripts["maximal"]),
             base], stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        loaded.append(wrk(base, args.seconds, args.connections, scripts["single"]))
        out, _ = looping.communicate(timeout=args.seconds + 60)
        found = re.search(r"Requests/sec:\s+([\d.]+)", out)
        batches.append(float(found[1]) if found else float("nan"))

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    load = os.getloadavg()[0]
    print(f"single checks alone vs beside one client looping batches of 1,000 flows x "
          f"{categories} categories: wrk -t2 -c{args.connections} -d{args.seconds}s, "
          f"{args.workers} worker(s), medians of {args.repeat}; load average {load:.2f}")
    print(f"{'figure':<36}{'alone':>10}{'beside':>10}{'ratio':>8}")
    for label, key in (("single check requests/s", "rps"), ("single check p50 ms", "p50"),
                       ("single check p99 ms", "p99")):
        a = median([r.get(key, float("nan")) for r in alone])
        b = median([r.get(key, float("nan")) for r in loaded])
        print(f"{label:<36}{a:>10,.1f}{b:>10,.1f}{b / a:>8.2f}")
    print(f"maximal batches answered per second beside: {median(batches):.2f}")
    failed = sum(r["non2xx"] for r in alone + loaded)
    print(f"non-2xx single-check responses: {failed:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--beside-batches", action="store_true",
                        help="single checks alone vs beside a client looping maximal batches")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    folder = Path(tempfile.mkdtemp(prefix="flowguard-bench-server-"))
    try:
        flowguard("registry", "import", str(EXAMPLE / "consents.yaml"), "-r",
                  "sqlite:///registry.db", "-p", str(EXAMPLE), "--by", "bench", cwd=folder)
        flowguard("keys", "generate", "--name", "bench.flowguard/log", "--out", "log.key",
                  cwd=folder)
        flowguard("keys", "pseudonym", "--out", "pseudonym.key", cwd=folder)
        token = flowguard("token", "new", "--file", "tokens.yaml", "--id", "bench",
                          "--organization", "aalborg-kommune", "--scope", "check", cwd=folder)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "flowguard", "serve", "-p", str(EXAMPLE), "-r",
             "sqlite:///registry.db", "--audit", "sqlite:///audit.db", "--log-key", "log.key",
             "--pseudonym-key", "pseudonym.key", "--tokens", "tokens.yaml", "--port",
             str(port), "--workers", str(args.workers), "--batch-limit",
             str(max(args.batch, 1000))], cwd=folder, stdout=subprocess.DEVNULL,
            stderr=(folder / "server.log").open("w"), text=True, env=ENV)
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        single_bodies = [json.dumps({**FLOW, "subject": s}) for s in SUBJECTS]
        batch_body = json.dumps({"flows": [{**FLOW, "subject": SUBJECTS[i % len(SUBJECTS)]}
                                           for i in range(args.batch)]})
        scripts = {}
        for name, path, bodies in (("single", "/v1/check", single_bodies),
                                   ("batch", "/v1/check/batch", [batch_body])):
            script = folder / f"{name}.lua"
            script.write_text(
                "BODIES = {" + ", ".join(lua_string(b) for b in bodies) + "}\n"
                + LUA.replace("TOKEN", token).replace("PATH", path)
                .replace("RUN", uuid.uuid4().hex))
            scripts[name] = script
        if args.beside_batches:
            categories = sorted(yaml_categories(EXAMPLE))
            maximal = json.dumps({"flows": [
                {**FLOW, "subject": SUBJECTS[i % len(SUBJECTS)], "data": categories}
                for i in range(1000)]})
            script = folder / "maximal.lua"
            script.write_text("BODIES = {" + lua_string(maximal) + "}\n" + LUA.replace(
                "TOKEN", token).replace("PATH", "/v1/check/batch").replace(
                "RUN", uuid.uuid4().hex))
            scripts["maximal"] = script
            beside(args, base, scripts, len(categories))
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=60)
            return
        results: dict[str, list[dict[str, float]]] = {"healthz": [], "single": [], "batch": []}
        for _ in range(args.repeat):
            for script in scripts.values():  # fresh request ids for every run
                script.write_text(re.sub(r'"[0-9a-f]{32}-', f'"{uuid.uuid4().hex}-',
                                         script.read_text()))
            results["healthz"].append(wrk(base + "/healthz", args.seconds, args.connections,
                                          None))
            results["single"].append(wrk(base, args.seconds, args.connections,
                                         scripts["single"]))
            results["batch"].append(wrk(base, args.seconds, 2 * args.workers, scripts["batch"]))
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    finally:
        if os.environ.get("BENCH_SERVER_LOG"):
            shutil.copy(folder / "server.log", os.environ["BENCH_SERVER_LOG"])
        shutil.rmtree(folder, ignore_errors=True)

    def median(name: str, key: str) -> float:
        values = sorted(r.get(key, float("nan")) for r in results[name])
        return values[len(values) // 2]

    load = os.getloadavg()[0]
    print(f"flowguard serve load test: wrk -t2 -c{args.connections} -d{args.seconds}s, "
          f"{args.workers} worker(s), medians of {args.repeat}; load average {load:.2f}")
    print(f"{'figure':<44}{'flowguard':>12}{'baseline':>12}{'ratio':>8}")
    base_rps = median("healthz", "rps")
    rows = [
        ("single check requests/s (audited, SQLite)", median("single", "rps"), base_rps),
        ("single check p50 ms", median("single", "p50"), median("healthz", "p50")),
        ("single check p99 ms", median("single", "p99"), median("healthz", "p99")),
        (f"batch ({args.batch} flows) flows/s", median("batch", "rps") * args.batch, None),
        ("batch request p99 ms", median("batch", "p99"), None),
    ]
    for label, value, baseline in rows:
        ratio = f"{value / baseline:.2f}" if baseline else ""
        shown = f"{baseline:,.1f}" if baseline else ""
        print(f"{label:<44}{value:>12,.1f}{shown:>12}{ratio:>8}")
    failed = sum(r["non2xx"] for rs in results.values() for r in rs)
    print(f"non-2xx responses: {failed:.0f}  (baseline: GET /healthz, no auth, no body)")


if __name__ == "__main__":
    main()
