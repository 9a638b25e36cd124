#!/usr/bin/env python3
"""flowguard engine benchmark: load times, check_many and single-check throughput and latency,
memory, and agreement with a plain-Python baseline evaluated in the same process.

    python bench/bench_engine.py                     # 1,000 rules, 10,000 subjects,
                                                     # 50,000 consents, 100,000 flows
    python bench/bench_engine.py --rules 100 --subjects 1000 --consents 5000 --flows 10000
    python bench/bench_engine.py --budget 5 --json /tmp/bench.json

Method:
1. ``bench/workload.py`` generates the workload (policy.yaml, registry.json, flows.json) into
   a temporary folder, in a child process, so that its memory does not count here.
2. Time ``flowguard.load_policy(dir)``, ``flowguard.load_registry(path, policy)`` and
   ``flowguard.Engine(policy, registry)``; build the ``flowguard.Flow`` objects (timed apart).
   The baseline (``bench/reference.py``) parses the same files and builds its indexes (timed).
3. A first full pass of ``check_many`` over all flows (slices of ``--slice``) -- the "cold"
   pass, which also pays for anything the engine compiles lazily -- and a full baseline pass.
   These give the agreement figure and the permit/deny mix.
4. Timed paths, each for up to ``--budget`` seconds, on a warm engine, walking the flows
   cyclically: ``check_many`` on slices (median of ``--passes`` passes); single ``check``
   calls, each timed with ``perf_counter_ns``; the same two for the baseline.
   With ``--gc-freeze`` the long-lived objects (policy, registry, flows) are moved out of the
   collector's reach first, which shows how much of a figure is garbage-collection work.
5. Peak RSS (``ru_maxrss``) after the build and at the end; then a separate traced rebuild
   gives the ``tracemalloc`` peak and retained memory of policy load, registry load, engine
   build and a first full ``check_many`` pass (state the engine compiles lazily).

Exit status 1 when flowguard and the baseline disagree on any flow (the first mismatches
are printed), 2 when the workload cannot be loaded.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference  # noqa: E402
import workload  # noqa: E402

BAR_CHECK_MANY = 100_000.0  # decisions/s
BAR_P99_US = 100.0  # µs
BAR_POLICY_LOAD_S = 1.0  # s, for 1,000 rules
BAR_RULES = 1000


def rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux: ru_maxrss is in KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def pct(sorted_ns: Sequence[int], q: float) -> float:
    """q-th percentile (nearest rank) of sorted nanoseconds, in µs."""
    if not sorted_ns:
        return float("nan")
    i = min(len(sorted_ns) - 1, max(0, round(q / 100.0 * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[i] / 1000.0


def batch_passes(run: Callable[[Sequence[Any]], Any], items: Sequence[Any], slice_n: int,
                 budget: float, passes: int) -> dict[str, Any]:
    """Run ``run`` on consecutive slices (cyclically) for ``passes`` passes of budget/passes s.

    A pass stops after its time share or after one sweep over all items; returns the median
    decisions/s over passes, and the per-pass figures.
    """
    n = len(items)
    share = budget / max(1, passes)
    pos = 0
    rates: list[float] = []
    total = 0
    for _ in range(passes):
        done = 0
        t0 = time.perf_counter()
        elapsed = 0.0
        while done < n and (done == 0 or elapsed < share):
            end = min(pos + slice_n, n)
            run(items[pos:end])
            done += end - pos
            pos = 0 if end >= n else end
            elapsed = time.perf_counter() - t0
        rates.append(done / elapsed if elapsed > 0 else float("inf"))
        total += done
    return {"decisions_per_s": statistics.median(rates), "passes": [round(r) for r in rates],
            "decisions": total}


def single_calls(call: Callable[[Any], Any], items: Sequence[Any], budget: float,
                 start: int = 0) -> dict[str, Any]:
    """Call ``call`` once per item (cyclically from ``start``), each timed with
    perf_counter_ns, until ``budget`` s or one sweep over all items."""
    n = len(items)
    lat: list[int] = []
    append = lat.append
    clock = time.perf_counter_ns
    deadline = clock() + int(budget * 1e9)
    i = start % n
    t0 = clock()
    for _ in range(n):
        item = items[i]
        a = clock()
        call(item)
        b = clock()
        append(b - a)
        i += 1
        if i == n:
            i = 0
        if b >= deadline:
            break
    wall = (clock() - t0) / 1e9
    lat.sort()
    return {"decisions_per_s": len(lat) / wall if wall > 0 else float("inf"),
            "calls": len(lat), "p50_us": pct(lat, 50), "p90_us": pct(lat, 90),
            "p99_us": pct(lat, 99), "max_us": lat[-1] / 1000.0 if lat else float("nan")}


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# --------------------------------------------------------------------------- output


def fmt_num(x: float, digits: int = 0) -> str:
    if x != x:  # NaN
        return "—"
    return f"{x:,.{digits}f}"


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain aligned text
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print(f"\n{title}")
        print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                        for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
        for r in rows:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        return
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    Console(width=max(100, min(160, os.get_terminal_size(1).columns
                               if os.isatty(1) else 120))).print(table)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    workload.add_size_args(ap)
    ap.add_argument("--budget", type=float, default=10.0,
                    help="seconds per timed path (check_many, check, baseline x2)")
    ap.add_argument("--slice", type=int, default=2000, help="flows per check_many call")
    ap.add_argument("--passes", type=int, default=5, help="check_many passes (median)")
    ap.add_argument("--warmup", type=int, default=2000, help="warm-up calls per path")
    ap.add_argument("--workdir", help="generate into this folder (kept) instead of a temp dir")
    ap.add_argument("--json", dest="json_out", help="write the figures as JSON to this file")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="gc.freeze() after setup, before the timed paths (default: off)")
    a = ap.parse_args(argv)

    tmp: tempfile.TemporaryDirectory[str] | None = None
    if a.workdir:
        wdir = a.workdir
    else:
        tmp = tempfile.TemporaryDirectory(prefix="flowguard-bench-")
        wdir = tmp.name
    try:
        return run(a, wdir)
    finally:
        if tmp is not None:
            tmp.cleanup()


def run(a: argparse.Namespace, wdir: str) -> int:
    import flowguard

    res: dict[str, Any] = {"params": {"seed": a.seed, "rules": a.rules, "subjects": a.subjects,
                                      "consents": a.consents, "flows": a.flows,
                                      "budget_s": a.budget, "slice": a.slice,
                                      "passes": a.passes, "gc_freeze": a.gc_freeze},
                           "machine": {"python": platform.python_version(),
                                       "platform": platform.platform(),
                                       "cpus": os.cpu_count(),
                                       "flowguard": getattr(flowguard, "__version__", "?"),
                                       "loadavg_start": os.getloadavg()[0]}}

    # 1. workload, generated in a child process
    t = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(HERE, "workload.py"), "--out", wdir,
                    "--seed", str(a.seed), "--rules", str(a.rules), "--subjects",
                    str(a.subjects), "--consents", str(a.consents), "--flows", str(a.flows)],
                   check=True, stdout=subprocess.DEVNULL)
    res["generate_s"] = time.perf_counter() - t
    with open(os.path.join(wdir, "params.json"), encoding="utf-8") as fh:
        res["workload"] = json.load(fh)
    specs = workload.load_flows(wdir)
    policy_file = os.path.join(wdir, "policy.yaml")
    registry_file = os.path.join(wdir, "registry.json")
    rss_base = rss_mb()

    # 2. loads
    gc.collect()
    try:
        t0 = time.perf_counter()
        policy = flowguard.load_policy(wdir)
        t1 = time.perf_counter()
        registry = flowguard.load_registry(registry_file, policy)
        t2 = time.perf_counter()
        engine = flowguard.Engine(policy, registry)
        t3 = time.perf_counter()
        t_pol, t_reg, t_eng = t1 - t0, t2 - t1, t3 - t2
    except Exception as exc:
        print(f"flowguard could not load the workload in {wdir}: {exc}", file=sys.stderr)
        return 2
    rss_build = rss_mb()
    flows, t_flows = timed(lambda: [flowguard.Flow(**s) for s in specs])
    gc.disable()  # the baseline pauses the collector while it builds (a cheap, common trick)
    try:
        ref, t_ref = timed(lambda: reference.build(policy_file, registry_file))
    finally:
        gc.enable()
    ref_flows: list[dict[str, Any]] = [dict(s) for s in specs]
    res["load"] = {"policy_s": t_pol, "registry_s": t_reg, "engine_build_s": t_eng,
                   "total_s": t_pol + t_reg + t_eng, "flow_objects_s": t_flows,
                   "baseline_build_s": t_ref}

    # 3. cold full passes: agreement and mix
    slice_n = max(1, a.slice)
    fg_permit: list[bool] = []
    reasons: Counter[str] = Counter()
    t_cold = 0.0
    for i in range(0, len(flows), slice_n):
        t = time.perf_counter()
        ds = engine.check_many(flows[i:i + slice_n])
        t_cold += time.perf_counter() - t
        fg_permit.extend(d.decision == "permit" for d in ds)
        reasons.update(str(getattr(d, "reason", d.decision)) for d in ds)
        del ds  # keep no decisions alive: they would weigh on RSS and on the collector
    t = time.perf_counter()
    ref_all = reference.decide_many(ref, ref_flows)
    t_ref_full = time.perf_counter() - t
    mismatches = [i for i, (x, y) in enumerate(zip(fg_permit, ref_all, strict=True)) if x != y]
    n = len(flows)
    res["full_pass"] = {"check_many_cold_decisions_per_s": n / t_cold if t_cold else 0.0,
                        "baseline_decisions_per_s": n / t_ref_full if t_ref_full else 0.0}
    res["agreement"] = {"flows": n, "agree": n - len(mismatches),
                        "percent": 100.0 * (n - len(mismatches)) / n if n else 100.0,
                        "mismatches": len(mismatches)}
    res["mix"] = {"flowguard_permit": sum(fg_permit), "flowguard_deny": n - sum(fg_permit),
                  "baseline_permit": sum(ref_all), "baseline_deny": n - sum(ref_all),
                  "flowguard_reasons": dict(reasons.most_common())}

    # 4. warm timed paths
    if a.gc_freeze:
        gc.collect()
        gc.freeze()  # long-lived workload objects are no longer scanned by the collector
    w = min(a.warmup, n)
    engine.check_many(flows[:w])
    for f in flows[:w]:
        engine.check(f)
    reference.decide_many(ref, ref_flows[:w])
    for rf in ref_flows[:w]:
        reference.decide(ref, rf)
    gc.collect()
    res["check_many"] = batch_passes(engine.check_many, flows, slice_n, a.budget, a.passes)
    gc.collect()
    res["check"] = single_calls(engine.check, flows, a.budget, start=w)
    gc.collect()
    res["baseline_many"] = batch_passes(lambda fs: reference.decide_many(ref, fs), ref_flows,
                                        slice_n, a.budget, a.passes)
    res["baseline_single"] = single_calls(lambda f: reference.decide(ref, f), ref_flows,
                                          a.budget, start=w)
    res["memory"] = {"rss_before_load_mb": rss_base, "rss_after_build_mb": rss_build,
                     "rss_peak_mb": rss_mb()}

    # 5. traced rebuild (separately, so tracing does not slow the timed build)
    del engine, registry, policy
    gc.collect()
    tracemalloc.start()
    traced: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        """Run fn under tracemalloc; record its peak above the start and what it retains."""
        gc.collect()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
        gc.collect()
        traced[f"tracemalloc_{name}_peak_mb"] = (peak - before) / 2**20
        traced[f"tracemalloc_{name}_retained_mb"] = \
            (tracemalloc.get_traced_memory()[0] - before) / 2**20
        return out

    pol2 = step("policy", partial(flowguard.load_policy, wdir))
    reg2 = step("registry", partial(flowguard.load_registry, registry_file, pol2))
    eng2 = step("engine_build", partial(flowguard.Engine, pol2, reg2))

    def full_pass(eng: Any) -> None:
        for i in range(0, len(flows), slice_n):
            eng.check_many(flows[i:i + slice_n])

    step("full_pass", partial(full_pass, eng2))  # state the engine compiles lazily, if any
    ref2 = step("baseline_build", partial(reference.build, policy_file, registry_file))
    tracemalloc.stop()
    del eng2, reg2, pol2, ref2
    res["memory"].update(traced)

    res["machine"]["loadavg_end"] = os.getloadavg()[0]
    report(res, flows, ref_flows, mismatches, fg_permit, ref_all)
    if a.json_out:
        with open(a.json_out, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=1, default=str)
            fh.write("\n")
        print(f"\nfigures written to {a.json_out}")
    return 1 if mismatches else 0


def report(res: dict[str, Any], flows: Sequence[Any], ref_flows: Sequence[dict[str, Any]],
           mismatches: list[int], fg_permit: list[bool], ref_all: list[bool]) -> None:
    wl, ld, m = res["workload"], res["load"], res["memory"]
    mc = res["machine"]
    print(f"flowguard {mc['flowguard']} engine benchmark -- Python {mc['python']}, "
          f"{mc['cpus']} CPUs, {mc['platform']}; 1-min load average {mc['loadavg_start']:.2f}"
          f" at start, {mc['loadavg_end']:.2f} at end (other work on the machine skews figures)")
    print(f"workload (seed {wl['seed']}): {wl['rules']:,} rules ({wl['consent_rules']:,} consent"
          f" permits, {wl['lawful_rules']:,} non-consent permits, {wl['forbid_rules']:,} forbids),"
          f" {wl['actors']} actors, {wl['categories']} leaf categories, {wl['purposes']} purposes;"
          f" {wl['subjects']:,} subjects, {wl['guardianships']:,} guardianships,"
          f" {wl['consents']:,} consents; {wl['flows']:,} flows; generated in "
          f"{res['generate_s']:.1f} s")

    ld_total = ld["total_s"]
    print_table("Load", ["step", "seconds"], [
        ["flowguard.load_policy(dir)", f"{ld['policy_s']:.3f}"],
        ["flowguard.load_registry(path, policy)", f"{ld['registry_s']:.3f}"],
        ["flowguard.Engine(policy, registry)", f"{ld['engine_build_s']:.3f}"],
        ["flowguard total", f"{ld_total:.3f}"],
        ["baseline: parse files + build indexes (gc paused)",
         f"{ld['baseline_build_s']:.3f}"],
        ["flowguard / baseline", f"{ratio(ld_total, ld['baseline_build_s']):.1f}x"],
        [f"flowguard.Flow objects ({len(flows):,}, not in any figure)",
         f"{ld['flow_objects_s']:.3f}"],
    ])

    cm, ck = res["check_many"], res["check"]
    bm, bs = res["baseline_many"], res["baseline_single"]
    fp = res["full_pass"]
    frozen = ", gc frozen" if res["params"]["gc_freeze"] else ""
    print_table(f"Throughput and latency (warm engine, one core{frozen})",
                ["figure", "flowguard", "baseline", "flowguard / baseline"], [
        ["check_many decisions/s (median of passes)", fmt_num(cm["decisions_per_s"]),
         fmt_num(bm["decisions_per_s"]),
         f"{ratio(cm['decisions_per_s'], bm['decisions_per_s']):.3f}"],
        ["single check decisions/s", fmt_num(ck["decisions_per_s"]),
         fmt_num(bs["decisions_per_s"]),
         f"{ratio(ck['decisions_per_s'], bs['decisions_per_s']):.3f}"],
        ["single check p50 µs", fmt_num(ck["p50_us"], 1), fmt_num(bs["p50_us"], 1),
         f"{ratio(ck['p50_us'], bs['p50_us']):.1f}"],
        ["single check p90 µs", fmt_num(ck["p90_us"], 1), fmt_num(bs["p90_us"], 1),
         f"{ratio(ck['p90_us'], bs['p90_us']):.1f}"],
        ["single check p99 µs", fmt_num(ck["p99_us"], 1), fmt_num(bs["p99_us"], 1),
         f"{ratio(ck['p99_us'], bs['p99_us']):.1f}"],
        ["single check max µs", fmt_num(ck["max_us"], 1), fmt_num(bs["max_us"], 1), ""],
        ["cold first full pass decisions/s (check_many)",
         fmt_num(fp["check_many_cold_decisions_per_s"]),
         fmt_num(fp["baseline_decisions_per_s"]),
         f"{ratio(fp['check_many_cold_decisions_per_s'], fp['baseline_decisions_per_s']):.3f}"],
        ["decisions timed: check_many / single", f"{cm['decisions']:,} / {ck['calls']:,}",
         f"{bm['decisions']:,} / {bs['calls']:,}", ""],
    ])
    print(f"check_many passes (decisions/s): {cm['passes']}; "
          f"baseline: {bm['passes']}")

    print_table("Memory", ["figure", "MB"], [
        ["peak RSS after generating + reading flows (start)", f"{m['rss_before_load_mb']:.0f}"],
        ["peak RSS after policy + registry + engine build", f"{m['rss_after_build_mb']:.0f}"],
        ["peak RSS at the end of the timed paths", f"{m['rss_peak_mb']:.0f}"],
        *[[f"tracemalloc {label}: peak / retained",
            f"{m[f'tracemalloc_{key}_peak_mb']:.1f} / {m[f'tracemalloc_{key}_retained_mb']:.1f}"]
          for label, key in (("load_policy", "policy"), ("load_registry", "registry"),
                             ("Engine build", "engine_build"),
                             ("first full check_many pass", "full_pass"),
                             ("baseline build (parse + indexes)", "baseline_build"))],
    ])

    ag, mix = res["agreement"], res["mix"]
    n = max(1, ag["flows"])
    print(f"\nagreement flowguard vs baseline: {ag['percent']:.2f}% of {ag['flows']:,} flows "
          f"({ag['mismatches']:,} mismatches)")
    print(f"mix: flowguard {mix['flowguard_permit'] / n:.1%} permit / "
          f"{mix['flowguard_deny'] / n:.1%} deny; baseline {mix['baseline_permit'] / n:.1%} "
          f"permit / {mix['baseline_deny'] / n:.1%} deny")
    print("flowguard primary reasons: " + ", ".join(
        f"{k} {v / n:.1%}" for k, v in mix["flowguard_reasons"].items()))

    bars = []
    v = cm["decisions_per_s"]
    bars.append(("check_many ≥ 100,000 decisions/s", f"{v:,.0f}/s", v >= BAR_CHECK_MANY))
    v = ck["p99_us"]
    bars.append(("single check p99 ≤ 100 µs", f"{v:,.1f} µs", v <= BAR_P99_US))
    v = ld["policy_s"]
    rules = res["workload"]["rules"]
    if rules >= BAR_RULES:
        bars.append((f"policy load of 1,000 rules ≤ 1 s ({rules:,} rules)", f"{v:.3f} s",
                     v <= BAR_POLICY_LOAD_S))
    else:
        bars.append((f"policy load of 1,000 rules ≤ 1 s (n/a: {rules:,} rules)", f"{v:.3f} s",
                     None))
    print()
    res["bars"] = {}
    for name, val, ok in bars:
        verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
        res["bars"][name] = {"value": val, "verdict": verdict}
        print(f"bar: {name}: {val} -- {verdict}")

    if mismatches:
        print(f"\nDISAGREEMENT on {len(mismatches):,} flows; first ones:", file=sys.stderr)
        for i in mismatches[:10]:
            f = ref_flows[i]
            print(f"  flow {i}: flowguard={'permit' if fg_permit[i] else 'deny'} "
                  f"baseline={'permit' if ref_all[i] else 'deny'} "
                  f"{ {**f, 'at': workload.rfc3339(f['at'])} }", file=sys.stderr)
        res["mismatch_examples"] = [
            {"index": i, "flowguard": fg_permit[i], "baseline": ref_all[i],
             "flow": {**ref_flows[i], "at": workload.rfc3339(ref_flows[i]["at"])}}
            for i in mismatches[:50]]


if __name__ == "__main__":
    sys.exit(main())
