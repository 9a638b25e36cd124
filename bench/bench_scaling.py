#!/usr/bin/env python3
"""Scaling of flowguard in the peer benchmark's workload (issue 7): decisions/s and peak RSS as
the number of rules and of consents grows.

    python bench/bench_scaling.py                          # all six rows (100k rules and 2.5M
                                                           # consents take minutes and GBs)
    python bench/bench_scaling.py --sizes rules-1k,rules-10k,consents-250k
    python bench/bench_scaling.py --requests 20000 --budget 5 --json-out /tmp/scaling.json
    python bench/bench_scaling.py --quick                  # tiny sizes, a smoke run

Rows (the shared generator's defaults otherwise; ~2.5 consents per citizen, seed 1):

    rules-1k / rules-10k / rules-100k            1,000 / 10,000 / 100,000 permit rules,
                                                 10,000 citizens
    consents-25k / consents-250k / consents-2.5m  10,000 / 100,000 / 1,000,000 citizens,
                                                 1,000 rules

rules-1k and consents-25k are the same workload: it runs once and is shown in both groups.
``--quick`` uses rules 100 -> 1,000 (1,000 citizens) and citizens 1,000 -> 10,000 (100 rules),
5,000 requests.

Method. Each workload is written by ``../shared/bench-peers/workload.py`` into
``--cache/<name>`` (default ``/tmp/flowbench/scaling``; reused when its parameters match) and
measured in a fresh process of its own, so that its peak RSS is its own. In that process:

1. ``workload.load(folder)`` (timed: json_s); RSS after it is the base.
2. Build the plain-Python reference engine (``adapter_reference.build``, timed apart) and the
   flowguard engine (``bench/peers/adapter_flowguard.build``, timed: load_s).
3. Timed paths, in this order, each from request 0 until every request is decided or
   ``--budget`` seconds pass, each call timed with ``perf_counter_ns`` as in ``run.py``:
   reference ``decide``; flowguard ``decide`` (``Engine.check``, cold: nothing warmed up);
   flowguard ``decide_batch`` (``Engine.check_many``) on slices of ``--batch-size`` (warm,
   after the single pass); reference ``decide`` again. The reference figure is the median of
   its two passes (they bracket flowguard's, so drift in the machine's load shows as a gap
   between them).
4. Peak RSS is ``ru_maxrss`` at the end: the JSON, both engines and the timed passes.

Every measured decision of both engines is compared with ``expected.json``; the exit status is 1
when any differs, 2 when a workload cannot be generated or a measuring process fails. The
machine this was written on is a shared, noisy 2-core VM: the Python version, ``nproc`` and the
load average are printed at the start and the end; compare ratios rather than absolute figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.path.join(os.path.dirname(ROOT), "shared", "bench-peers")
ADAPTER = os.path.join(HERE, "peers", "adapter_flowguard.py")
SEED = 1


@dataclass(frozen=True)
class Size:
    row: str
    rules: int
    citizens: int


RULE_ROWS = (Size("rules-1k", 1_000, 10_000), Size("rules-10k", 10_000, 10_000),
             Size("rules-100k", 100_000, 10_000))
CONSENT_ROWS = (Size("consents-25k", 1_000, 10_000), Size("consents-250k", 1_000, 100_000),
                Size("consents-2.5m", 1_000, 1_000_000))
QUICK_RULE_ROWS = (Size("quick-rules-100", 100, 1_000), Size("quick-rules-1k", 1_000, 1_000))
QUICK_CONSENT_ROWS = (Size("quick-consents-2.5k", 100, 1_000),
                      Size("quick-consents-25k", 100, 10_000))
DEFAULT_REQUESTS = 100_000
QUICK_REQUESTS = 5_000


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def pct(sorted_vals: Sequence[int], q: float) -> float:
    i = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return float(sorted_vals[i])


def machine(label: str) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"# {label}: python {platform.python_version()} ({sys.executable}), "
            f"nproc {os.cpu_count()}, load average {load}")


# ---------------------------------------------------------------- measuring process


def _import(folder: str, name: str) -> ModuleType:
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def _single(decide: Callable[[Any, Any], bool], engine: Any, reqs: Sequence[Any],
            expected: Sequence[bool], budget: float) -> dict[str, Any]:
    """decide() one request at a time from request 0 until all are done or the budget is spent."""
    lat: list[int] = []
    mismatches: list[int] = []
    pc = time.perf_counter_ns
    t0 = time.perf_counter()
    deadline = t0 + budget
    n = 0
    for i in range(len(reqs)):
        s = pc()
        d = decide(engine, reqs[i])
        lat.append(pc() - s)
        if d != expected[i]:
            mismatches.append(i)
        n += 1
        if (n & 63) == 0 and time.perf_counter() > deadline:
            break
    wall = time.perf_counter() - t0
    lat.sort()
    return {"n": n, "dps": n / wall, "p50_us": pct(lat, 0.50) / 1e3,
            "p99_us": pct(lat, 0.99) / 1e3, "mismatches": mismatches}


def _batch(decide_batch: Callable[[Any, Any], list[bool]], engine: Any, reqs: Sequence[Any],
           expected: Sequence[bool], budget: float, size: int) -> dict[str, Any]:
    mismatches: list[int] = []
    t0 = time.perf_counter()
    deadline = t0 + budget
    n = 0
    while n < len(reqs):
        chunk = reqs[n:n + size]
        for j, d in enumerate(decide_batch(engine, chunk)):
            if d != expected[n + j]:
                mismatches.append(n + j)
        n += len(chunk)
        if time.perf_counter() > deadline:
            break
    return {"n": n, "dps": n / (time.perf_counter() - t0), "mismatches": mismatches}


def worker(folder: str, peers: str, budget: float, batch_size: int) -> dict[str, Any]:
    workload = _import(peers, "workload")
    reference = _import(peers, "adapter_reference")
    flowguard = _import(os.path.dirname(ADAPTER), "adapter_flowguard")

    t = time.perf_counter()
    wl = workload.load(folder)
    json_s = time.perf_counter() - t
    rss_base = rss_mb()
    reqs = wl["requests"]["requests"]
    expected = [d == "permit" for d in wl["expected"]["decisions"]]
    if len(expected) != len(reqs):
        raise ValueError(f"{folder}: {len(reqs)} requests but {len(expected)} expected decisions")

    t = time.perf_counter()
    ref = reference.build(wl)
    ref_load_s = time.perf_counter() - t
    rss_ref = rss_mb()
    t = time.perf_counter()
    eng = flowguard.build(wl)
    load_s = time.perf_counter() - t
    rss_loaded = rss_mb()

    cap = budget if budget > 0 else float("inf")
    ref1 = _single(reference.decide, ref, reqs, expected, cap)
    single = _single(flowguard.decide, eng, reqs, expected, cap)
    batch = _batch(flowguard.decide_batch, eng, reqs, expected, cap, batch_size)
    ref2 = _single(reference.decide, ref, reqs, expected, cap)

    ref_dps = statistics.median([ref1["dps"], ref2["dps"]])
    fg_checked = single["n"] + batch["n"]
    fg_bad = sorted(set(single["mismatches"]) | set(batch["mismatches"]))
    ref_bad = sorted(set(ref1["mismatches"]) | set(ref2["mismatches"]))
    return {
        "folder": folder, "params": wl["model"]["params"],
        "rules": len(wl["policies"]["permits"]), "forbids": len(wl["policies"]["forbids"]),
        "citizens": len(wl["consents"]["citizens"]), "consents": len(wl["consents"]["consents"]),
        "requests": len(reqs), "version": flowguard.version(),
        "json_s": json_s, "ref_load_s": ref_load_s, "load_s": load_s,
        "single_n": single["n"], "single_dps": single["dps"],
        "p50_us": single["p50_us"], "p99_us": single["p99_us"],
        "batch_size": batch_size, "batch_n": batch["n"], "batch_dps": batch["dps"],
        "ref_n": [ref1["n"], ref2["n"]], "ref_dps_passes": [ref1["dps"], ref2["dps"]],
        "ref_dps": ref_dps, "ref_p50_us": ref1["p50_us"], "ref_p99_us": ref1["p99_us"],
        "check_ratio": single["dps"] / ref_dps, "check_many_ratio": batch["dps"] / ref_dps,
        "rss_base_mb": rss_base, "rss_after_reference_mb": rss_ref,
        "rss_loaded_mb": rss_loaded, "rss_peak_mb": rss_mb(),
        "checked": fg_checked,
        "mismatches": len(single["mismatches"]) + len(batch["mismatches"]),
        "mismatch_ids": [reqs[i]["id"] for i in fg_bad[:10]],
        "ref_checked": ref1["n"] + ref2["n"],
        "ref_mismatches": len(ref1["mismatches"]) + len(ref2["mismatches"]),
        "ref_mismatch_ids": [reqs[i]["id"] for i in ref_bad[:10]],
    }


# ---------------------------------------------------------------- driver


def ensure_workload(python: str, peers: str, cache: str, size: Size, requests: int) -> str:
    """The workload folder for `size`, generated unless a complete one with the same
    parameters is there already (expected.json is written last)."""
    folder = os.path.join(cache, f"n{size.rules}-c{size.citizens}-m{requests}-s{SEED}")
    want = {"rules": size.rules, "citizens": size.citizens, "requests": requests, "seed": SEED}
    try:
        with open(os.path.join(folder, "model.json")) as fh:
            params = json.load(fh)["params"]
        if (os.path.exists(os.path.join(folder, "expected.json"))
                and all(params.get(k) == v for k, v in want.items())):
            return folder
    except (OSError, ValueError, KeyError):
        pass
    cmd = [python, os.path.join(peers, "workload.py"), "--out", folder,
           "--rules", str(size.rules), "--citizens", str(size.citizens),
           "--requests", str(requests), "--seed", str(SEED)]
    print(f"# generating {folder}", flush=True)
    if os.path.exists(os.path.join(folder, "expected.json")):
        os.remove(os.path.join(folder, "expected.json"))  # incomplete until rewritten
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"workload.py failed:\n{p.stderr[-2000:]}")
    print("#   " + p.stdout.strip().replace("\n", "\n#   "), flush=True)
    return folder


def measure(folder: str, a: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", folder, "--peers", a.peers,
           "--budget", str(a.budget), "--batch-size", str(a.batch_size)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {folder} failed:\n{(p.stderr or p.stdout)[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _f(v: float, spec: str) -> str:
    return format(v, spec)


def table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    head = ("| row | rules | citizens | consents | load s | flowguard check dec/s "
            "| check_many dec/s | reference dec/s | check/ref | check_many/ref | p50 µs "
            "| p99 µs | peak RSS MB (base) | agreement |")
    lines = [head, "|" + "---|" * 14]
    for row, r in rows:
        agree = f"{100.0 * (r['checked'] - r['mismatches']) / max(1, r['checked']):.2f} %"
        if r["mismatches"]:
            agree += f" ({r['mismatches']:,} wrong)"
        lines.append(
            f"| {row} | {r['rules']:,} | {r['citizens']:,} | {r['consents']:,} "
            f"| {_f(r['load_s'], '.2f')} | {_f(r['single_dps'], ',.0f')} "
            f"| {_f(r['batch_dps'], ',.0f')} | {_f(r['ref_dps'], ',.0f')} "
            f"| {_f(r['check_ratio'], '.3f')} | {_f(r['check_many_ratio'], '.3f')} "
            f"| {_f(r['p50_us'], ',.1f')} | {_f(r['p99_us'], ',.1f')} "
            f"| {_f(r['rss_peak_mb'], ',.0f')} ({_f(r['rss_base_mb'], ',.0f')}) "
            f"| {agree} of {r['checked']:,} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="",
                    help="comma list of rows (default: all of the mode's rows), e.g. "
                         "rules-1k,rules-10k,rules-100k,consents-25k,consents-250k,consents-2.5m")
    ap.add_argument("--requests", type=int, default=0,
                    help=f"requests per workload (default {DEFAULT_REQUESTS:,}; "
                         f"--quick {QUICK_REQUESTS:,})")
    ap.add_argument("--budget", type=float, default=10.0,
                    help="seconds per timed path (0 = no cap: every request)")
    ap.add_argument("--batch-size", type=int, default=2000, help="check_many slice")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--cache", default="/tmp/flowbench/scaling",
                    help="where workloads are generated and reused")
    ap.add_argument("--peers", default=PEERS, help="the shared bench-peers folder")
    ap.add_argument("--json-out", default="", help="write the results here as JSON")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.peers = os.path.abspath(a.peers)

    if a.worker:
        print(json.dumps(worker(a.worker, a.peers, a.budget, a.batch_size)))
        return 0

    groups = (QUICK_RULE_ROWS, QUICK_CONSENT_ROWS) if a.quick else (RULE_ROWS, CONSENT_ROWS)
    known = [s for g in groups for s in g]
    names = [n.strip() for n in a.sizes.split(",") if n.strip()]
    unknown = sorted(set(names) - {s.row for s in known})
    if unknown:
        ap.error(f"unknown sizes {unknown}; known: {', '.join(s.row for s in known)}")
    sizes = [s for s in known if not names or s.row in names]
    requests = a.requests or (QUICK_REQUESTS if a.quick else DEFAULT_REQUESTS)

    load_start = os.getloadavg()
    print(machine("start"))
    print(f"# requests {requests:,}, budget {a.budget} s per path, check_many slices of "
          f"{a.batch_size:,}, peers {a.peers}", flush=True)
    results: dict[tuple[int, int], dict[str, Any]] = {}
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        for s in sizes:
            key = (s.rules, s.citizens)
            if key not in results:
                folder = ensure_workload(sys.executable, a.peers, a.cache, s, requests)
                r = measure(folder, a)
                results[key] = r
                passes = " / ".join(f"{x:,.0f}" for x in r["ref_dps_passes"])
                print(f"#   {s.row}: load {r['load_s']:.2f} s, check {r['single_dps']:,.0f}/s "
                      f"({r['single_n']:,}), check_many {r['batch_dps']:,.0f}/s "
                      f"({r['batch_n']:,}), reference {passes}/s, peak RSS "
                      f"{r['rss_peak_mb']:,.0f} MB, mismatches {r['mismatches']}", flush=True)
            rows.append((s.row, results[key]))
    except RuntimeError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2
    print()
    print(table(rows))
    print()
    print(machine("end"))
    if a.json_out:
        with open(a.json_out, "w") as fh:
            json.dump({"python": platform.python_version(), "nproc": os.cpu_count(),
                       "load_average_start": load_start, "load_average_end": os.getloadavg(),
                       "requests": requests, "budget": a.budget, "batch_size": a.batch_size,
                       "rows": [{"row": row, **r} for row, r in rows]}, fh, indent=1)
    bad = {id(r): (row, r) for row, r in reversed(rows) if r["mismatches"] or r["ref_mismatches"]}
    for row, r in reversed(bad.values()):
        print(f"DISAGREEMENT with expected.json in {row}: flowguard {r['mismatches']} of "
              f"{r['checked']:,} decisions (first ids {r['mismatch_ids']}), reference "
              f"{r['ref_mismatches']} of {r['ref_checked']:,} ({r['ref_mismatch_ids']})",
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
