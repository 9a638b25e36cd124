#!/usr/bin/env python3
"""flowguard audit-log benchmark (issue 4): appends/s on SQLite and PostgreSQL, the cost of
auditing `Engine.check`, `verify` entries/s on a large log, and proof size and time.
Every figure is a median over ``--repeat`` runs and is set against a baseline measured in
the same process.

    python bench/bench_audit.py                  # 1,000,000-entry log, 3 runs per figure
    python bench/bench_audit.py --quick          # 50,000-entry log, short paths, 1 run
    python bench/bench_audit.py --entries 200000 --no-postgres --json /tmp/audit.json

PostgreSQL: ``FLOWGUARD_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test);
every measurement works in a fresh schema that is dropped afterwards. Unreachable -> the
PostgreSQL rows are left out.

Method:
1. Entries: the workload of ``bench/workload.py`` (a small one: 200 rules, 2,000 subjects,
   10,000 consents, 20,000 flows) decided by an engine without audit; each decision becomes
   the entry the audit trail writes (``decision_entry``, subject pseudonymised), so sizes and
   shapes are the real ones.
2. Appends, for group-commit batch sizes 1, 10, 100 and 1,000, each in a fresh database,
   checkpoints signed every 1,000 entries (Ed25519): ``AuditLog.append(dicts)`` (canonical
   JSON included) and ``append_encoded(bytes)``. Baseline: a bare ``INSERT`` of the same
   bytes into a plain ``(idx, entry)`` table of the same database kind, in transactions of
   the same sizes (``Database.write()``, the same connection settings).
3. Engine: ``check`` (one append per decision), ``check_many`` on slices of 100 and 1,000
   (one append per slice) with ``Engine(audit=...)``, against the same engine without audit,
   alternating, each for ``--budget`` s (``bench_engine.py``'s helpers).
4. Verify: a SQLite log of ``--entries`` entries (appended in batches of 10,000), then
   ``flowguard.audit.verify.verify_log`` (every entry parsed and re-encoded, every node and
   checkpoint checked) and a recompute-only pass (read + leaf hash + compact range).
   Baselines: bare ``hashlib.sha256(0x00 || entry)`` over the same entries in memory, and the
   same SELECTs that read them. When verify misses its target, a cProfile of one run says
   where the time goes.
5. Proofs at that size: inclusion proofs of 1,000 random indices and consistency proofs from
   1,000 random old sizes to the full tree, served from the stored nodes (one batched
   SELECT each): bytes and µs (median of 1,000), and the client's verification time.
   Baseline: one indexed lookup of one stored node.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import hashlib
import json
import os
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import workload  # noqa: E402
from bench_engine import batch_passes, fmt_num, print_table, ratio, single_calls  # noqa: E402
from bench_registry import POSTGRES_URL, postgres_reachable  # noqa: E402

ORIGIN = "bench.flowguard.example/audit"
BATCHES = (1, 10, 100, 1000)
CHECKPOINT_EVERY = 1000
BAR_APPENDS = 20_000.0  # appends/s, SQLite, group commit
BAR_VERIFY = 200_000.0  # entries/s
# entries appended per measurement, by batch size (a full run; --quick divides by 10)
APPENDS = {"sqlite": {1: 4000, 10: 20_000, 100: 50_000, 1000: 100_000},
           "postgresql": {1: 2000, 10: 10_000, 100: 20_000, 1000: 50_000}}


# --------------------------------------------------------------------------- databases


@contextmanager
def database(kind: str, wdir: str) -> Iterator[str]:
    """A fresh, empty database URL of `kind`; removed afterwards."""
    if kind == "sqlite":
        path = os.path.join(wdir, f"audit-{uuid.uuid4().hex[:8]}.db")
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
        return
    import psycopg

    schema = f"fg_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        # flush what earlier measurements left dirty, so that it does not slow this one
        # (needs a superuser, or pg_checkpoint on PostgreSQL 15; else figures are noisier)
        with contextlib.suppress(psycopg.Error):
            conn.execute("CHECKPOINT")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def open_log(url: str, signer: Any) -> Any:
    from flowguard.audit.log import AuditLog, init_audit
    from flowguard.store._db import connect

    db = connect(url)
    init_audit(db)
    return AuditLog(db, signer=signer, checkpoint_every=CHECKPOINT_EVERY,
                    checkpoint_seconds=1e9)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct_us(sorted_ns: Sequence[int], q: float) -> float:
    i = min(len(sorted_ns) - 1, max(0, round(q / 100.0 * len(sorted_ns) + 0.5) - 1))
    return sorted_ns[i] / 1000.0


def timed_ns(call: Callable[[Any], Any], items: Sequence[Any]) -> list[int]:
    """Each call's duration, ns, sorted."""
    clock = time.perf_counter_ns
    out = []
    for item in items:
        a = clock()
        call(item)
        out.append(clock() - a)
    out.sort()
    return out


# --------------------------------------------------------------------------- entries


def make_entries(a: argparse.Namespace, wdir: str) -> dict[str, Any]:
    """Real decision entries: the workload decided by an engine without audit."""
    import flowguard
    from flowguard.audit.entries import Pseudonymizer, canonical_entry, decision_entry

    t = time.perf_counter()
    wl = workload.generate(seed=1, rules=200, subjects=2000, consents=10_000, flows=a.flows)
    workload.write(wl, wdir)
    policy = flowguard.load_policy(wdir)
    registry = flowguard.load_registry(os.path.join(wdir, "registry.json"), policy)
    flows = [flowguard.Flow(**s) for s in wl["flows"]]
    engine = flowguard.Engine(policy, registry)
    decisions = [d for i in range(0, len(flows), 1000)
                 for d in engine.check_many(flows[i:i + 1000])]
    pseudonym = Pseudonymizer(os.urandom(32))
    actors = policy.actors
    dicts = [decision_entry(d, pseudonym, registry_revision=registry.revision,
                            organization=actors[d.flow.recipient].organization
                            if d.flow.recipient in actors else "") for d in decisions]
    encoded = [canonical_entry(e) for e in dicts]
    sizes = sorted(len(e) for e in encoded)
    return {"policy": policy, "registry": registry, "flows": flows, "dicts": dicts,
            "encoded": encoded, "pseudonym": pseudonym, "setup_s": time.perf_counter() - t,
            "entry_bytes": {"min": sizes[0], "median": sizes[len(sizes) // 2],
                            "max": sizes[-1], "mean": sum(sizes) / len(sizes)},
            "permits": sum(d.decision == "permit" for d in decisions)}


def cycled(items: Sequence[Any], n: int) -> list[Any]:
    m = len(items)
    return [items[i % m] for i in range(n)]


# --------------------------------------------------------------------------- 2. appends


def appends_once(kind: str, mode: str, batch: int, items: Sequence[Any], signer: Any,
                 wdir: str) -> tuple[float, int]:
    """Entries/s of one fresh log (or plain table), and the checkpoints signed."""
    with database(kind, wdir) as url:
        if mode == "baseline":
            from flowguard.store._db import connect

            db = connect(url)
            blob = "BLOB" if kind == "sqlite" else "BYTEA"
            with db.write() as cursor:
                cursor.execute(f"CREATE TABLE plain (idx BIGINT PRIMARY KEY, entry {blob} "
                               "NOT NULL)")
            gc.collect()
            t = time.perf_counter()
            for start in range(0, len(items), batch):
                rows = [(start + i, e) for i, e in enumerate(items[start:start + batch])]
                with db.write() as cursor:
                    cursor.executemany("INSERT INTO plain (idx, entry) VALUES (?, ?)", rows)
            elapsed = time.perf_counter() - t
            db.close()
            return len(items) / elapsed, 0
        log = open_log(url, signer)
        append = log.append if mode == "append" else log.append_encoded
        gc.collect()
        t = time.perf_counter()
        for start in range(0, len(items), batch):
            append(items[start:start + batch])
        elapsed = time.perf_counter() - t
        assert log.size == len(items)
        checkpoints = len(log.checkpoints())
        log.close()
        return len(items) / elapsed, checkpoints


def bench_appends(a: argparse.Namespace, ent: dict[str, Any], stores: list[str], signer: Any,
                  wdir: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in stores:
        for batch in BATCHES:
            n = APPENDS[kind][batch] // (10 if a.quick else 1)
            dicts, encoded = cycled(ent["dicts"], n), cycled(ent["encoded"], n)
            runs: dict[str, list[float]] = {"append": [], "append_encoded": [], "baseline": []}
            checkpoints = 0
            for _ in range(a.repeat):  # alternate the three, so drift hits all alike
                for mode, items in (("baseline", encoded), ("append", dicts),
                                    ("append_encoded", encoded)):
                    rate, made = appends_once(kind, mode, batch, items, signer, wdir)
                    runs[mode].append(rate)
                    checkpoints = max(checkpoints, made)
            out[f"{kind}/{batch}"] = {
                "entries": n, "checkpoints": checkpoints,
                **{f"{mode}_per_s": median(r) for mode, r in runs.items()},
                "runs": {mode: [round(x) for x in r] for mode, r in runs.items()}}
            print(f"  appends {kind} batch {batch}: {out[f'{kind}/{batch}']['runs']}",
                  file=sys.stderr)
    return out


# --------------------------------------------------------------------------- 3. engine


def bench_engine_audit(a: argparse.Namespace, ent: dict[str, Any], stores: list[str],
                       signer: Any, wdir: str) -> dict[str, Any]:
    import flowguard
    from flowguard.audit.trail import AuditTrail

    flows, policy, registry = ent["flows"], ent["policy"], ent["registry"]
    out: dict[str, Any] = {}
    plain = flowguard.Engine(policy, registry)
    plain.check_many(flows)
    for kind in stores:
        with database(kind, wdir) as url:
            trail = AuditTrail(open_log(url, signer), ent["pseudonym"])
            audited = flowguard.Engine(policy, registry, audit=trail)
            audited.check_many(flows[:2000])
            figures: dict[str, dict[str, list[float]]] = {}
            singles: list[dict[str, Any]] = []
            for r in range(a.repeat):
                start = r * 7919
                for path in ("check", "check_many/100", "check_many/1000"):
                    fig = figures.setdefault(path, {"plain": [], "audit": []})
                    for name, engine in (("plain", plain), ("audit", audited)):
                        gc.collect()
                        if path == "check":
                            res = single_calls(engine.check, flows, a.budget, start=start)
                            if name == "audit":
                                singles.append(res)
                        else:
                            res = batch_passes(engine.check_many, flows,
                                               int(path.split("/")[1]), a.budget, 1)
                        fig[name].append(res["decisions_per_s"])
            size = trail.log.size
            trail.close()
        out[kind] = {path: {"plain_per_s": median(f["plain"]), "audit_per_s": median(f["audit"]),
                            "runs": {k: [round(x) for x in v] for k, v in f.items()}}
                     for path, f in figures.items()}
        out[kind]["check_audit_p50_us"] = median([s["p50_us"] for s in singles])
        out[kind]["check_audit_p99_us"] = median([s["p99_us"] for s in singles])
        out[kind]["entries_written"] = size
        runs = [(p, f["runs"]) for p, f in out[kind].items() if isinstance(f, dict)]
        print(f"  engine {kind}: {runs}", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- 4. verify


def build_log(a: argparse.Namespace, ent: dict[str, Any], signer: Any, url: str
              ) -> tuple[Any, float]:
    log = open_log(url, signer)
    encoded, m = ent["encoded"], len(ent["encoded"])
    t = time.perf_counter()
    for start in range(0, a.entries, 10_000):
        stop = min(start + 10_000, a.entries)
        log.append_encoded([encoded[i % m] for i in range(start, stop)])
    return log, a.entries / (time.perf_counter() - t)


def recompute(log: Any) -> bytes:
    from flowguard.audit.merkle import CompactRange, leaf_hash

    tree = CompactRange()
    append = tree.append
    for _, data in log.entries(batch=16384):
        append(leaf_hash(data))
    return tree.root()


def bench_verify(a: argparse.Namespace, ent: dict[str, Any], signer: Any, wdir: str
                 ) -> dict[str, Any]:
    try:
        from flowguard.audit.verify import verify_log
    except ImportError:
        verify_log = None
    out: dict[str, Any] = {"verify_log": verify_log is not None}
    with database("sqlite", wdir) as url:
        log, build_rate = build_log(a, ent, signer, url)
        n = log.size
        out.update(entries=n, build_per_s=build_rate, checkpoints=len(log.checkpoints()),
                   db_mb=os.path.getsize(url[len("sqlite:///"):]) / 2**20)
        verifier = signer.verifier()
        runs: dict[str, list[float]] = {"verify": [], "verify_integrity": [],
                                        "recompute": [], "sha256": [], "read": []}
        held = cycled(ent["encoded"], n)  # the same entry bytes, in memory
        expected_root = log.root()
        for _ in range(a.repeat):
            gc.collect()
            if verify_log is not None:
                t = time.perf_counter()
                report = verify_log(log, [verifier])
                runs["verify"].append(n / (time.perf_counter() - t))
                assert report.size == n and report.root == expected_root
                t = time.perf_counter()
                report = verify_log(log, [verifier], check_entries=False)
                runs["verify_integrity"].append(n / (time.perf_counter() - t))
                assert report.size == n and report.root == expected_root
            t = time.perf_counter()
            assert recompute(log) == expected_root
            runs["recompute"].append(n / (time.perf_counter() - t))
            sha, prefix = hashlib.sha256, b"\x00"
            t = time.perf_counter()
            for data in held:
                sha(prefix + data).digest()
            runs["sha256"].append(n / (time.perf_counter() - t))
            t = time.perf_counter()
            for start in range(0, n, 16384):
                log.db.read("SELECT idx, entry FROM audit_entries WHERE idx >= ? AND idx < ? "
                            "ORDER BY idx", (start, start + 16384))
            runs["read"].append(n / (time.perf_counter() - t))
        del held
        out.update({f"{k}_per_s": median(v) for k, v in runs.items()})
        out["runs"] = {k: [round(x) for x in v] for k, v in runs.items()}
        print(f"  verify: {out['runs']}", file=sys.stderr)
        if verify_log is not None and (a.profile or out["verify_per_s"] < BAR_VERIFY):
            out["profile"] = profile_verify(log, verifier, verify_log)
        out["proofs"] = bench_proofs(log)
        log.close()
    return out


def profile_verify(log: Any, verifier: Any, verify_log: Any) -> dict[str, Any]:
    """Where one verify_log run spends its time, by function (own time) and by group."""
    profiler = cProfile.Profile()
    t = time.perf_counter()
    profiler.enable()
    verify_log(log, [verifier])
    profiler.disable()
    wall = time.perf_counter() - t
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, name), (_, calls, own, _cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{os.path.basename(file)}:{line}({name})" if file != "~" else name
        rows.append((own, calls, where, f"{file}:{name}"))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    groups = (  # (group, substrings of "file:function"), first match wins
        ("entry check: orjson.loads", ("orjson.loads",)),
        ("entry check: orjson.dumps (re-encode)", ("orjson.dumps",)),
        ("entry check: float-token scan (bytes.join + re.search)",
         ("'join' of 'bytes'", "'search' of 're.Pattern'")),
        ("entry check: standard-library json (fallback)", ("/json/",)),
        ("SQLite reads (execute, fetchall)", ("sqlite3",)),
        ("SHA-256 (sha256 + digest)", ("sha256", "'digest'")),
        ("verify.py's own Python (loops, comprehensions)", ("verify.py",)),
        ("merkle.py", ("merkle.py",)),
    )
    grouped: dict[str, float] = {g: 0.0 for g, _ in groups}
    grouped["other"] = 0.0
    for own, _, _, key in rows:
        group = next((g for g, keys in groups if any(k in key for k in keys)), "other")
        grouped[group] += own
    return {"wall_s": wall, "profiled_total_s": total,
            "top": [{"function": w, "calls": c, "own_s": o} for o, c, w, _ in rows[:12]],
            "groups": grouped}


def bench_proofs(log: Any) -> dict[str, Any]:
    from flowguard.audit.merkle import leaf_hash, verify_consistency, verify_inclusion

    size = log.size
    rng = random.Random(7)
    indices = [rng.randrange(size) for _ in range(1000)]
    olds = [rng.randrange(1, size) for _ in range(1000)]
    root = log.root()
    out: dict[str, Any] = {"size": size}
    incl: dict[int, list[bytes]] = {}
    cons: dict[int, list[bytes]] = {}

    def inclusion(i: int) -> None:
        incl[i] = log.inclusion_proof(i, size)

    def consistency(old: int) -> None:
        cons[old] = log.consistency_proof(old, size)

    leaves = {i: leaf_hash(log.entry(i)) for i in indices}
    old_roots = {old: log.root(old) for old in olds}
    lookups = timed_ns(lambda i: log.nodes([(0, i)]), indices)
    t_incl = timed_ns(inclusion, indices)
    t_cons = timed_ns(consistency, olds)
    t_vincl = timed_ns(lambda i: verify_inclusion(leaves[i], i, size, incl[i], root), indices)
    t_vcons = timed_ns(lambda o: verify_consistency(o, size, old_roots[o], root, cons[o]), olds)
    for name, proofs, times, verify in (("inclusion", incl, t_incl, t_vincl),
                                        ("consistency", cons, t_cons, t_vcons)):
        sizes = sorted(32 * len(p) for p in proofs.values())
        out[name] = {"bytes_min": sizes[0], "bytes_median": sizes[len(sizes) // 2],
                     "bytes_max": sizes[-1], "p50_us": pct_us(times, 50),
                     "p99_us": pct_us(times, 99), "verify_p50_us": pct_us(verify, 50)}
    out["lookup_p50_us"] = pct_us(lookups, 50)
    return out


# --------------------------------------------------------------------------- report


def report(res: dict[str, Any], stores: list[str]) -> None:
    mc, ent = res["machine"], res["entries"]
    pg = f", {mc['postgresql']}" if mc.get("postgresql") else ""
    print(f"flowguard audit-log benchmark -- Python {mc['python']}, {mc['cpus']} CPUs, "
          f"{mc['platform']}, SQLite {mc['sqlite']}{pg};"
          f" 1-min load average {mc['loadavg_start']:.2f} at start, {mc['loadavg_end']:.2f} at "
          f"end (other work on the machine skews figures)")
    eb = ent["entry_bytes"]
    print(f"entries: {ent['count']:,} real decision entries ({ent['permits']:,} permits) from "
          f"the bench workload, canonical JSON of {eb['min']}-{eb['max']} bytes (median "
          f"{eb['median']}, mean {eb['mean']:.0f}); checkpoints signed (Ed25519) every "
          f"{CHECKPOINT_EVERY:,} entries; medians of {res['params']['repeat']} run(s)"
          + ("" if "postgresql" in stores else f"; PostgreSQL left out: {res['postgresql']}"))

    ap = res["appends"]
    rows = []
    for kind in stores:
        for batch in BATCHES:
            f = ap[f"{kind}/{batch}"]
            rows.append([f"{kind}, batch {batch:,}",
                         f"{f['entries']:,} ({f['checkpoints']})",
                         fmt_num(f["append_per_s"]), fmt_num(f["append_encoded_per_s"]),
                         fmt_num(f["baseline_per_s"]),
                         f"{ratio(f['append_per_s'], f['baseline_per_s']):.2f}",
                         f"{ratio(f['append_encoded_per_s'], f['baseline_per_s']):.2f}"])
    print_table("Appends/s (one writer; a batch = one transaction = one group commit)",
                ["store, batch", "entries (ckpts)", "append", "append_encoded", "baseline",
                 "append / base", "encoded / base"], rows)
    print("append: AuditLog.append(dicts), canonical JSON included; append_encoded: the same "
          "entries as bytes; baseline: bare INSERT of the same bytes into a plain (idx, entry) "
          "table, same transaction sizes and connection settings; ckpts: checkpoints signed")

    en = res["engine"]
    rows = []
    for kind in stores:
        for path in ("check", "check_many/100", "check_many/1000"):
            f = en[kind][path]
            rows.append([f"{kind}: {path}", fmt_num(f["audit_per_s"]),
                         fmt_num(f["plain_per_s"]),
                         f"{ratio(f['audit_per_s'], f['plain_per_s']):.3f}"])
        rows.append([f"{kind}: single check with audit p50 / p99 µs",
                     f"{fmt_num(en[kind]['check_audit_p50_us'], 1)} / "
                     f"{fmt_num(en[kind]['check_audit_p99_us'], 1)}", "", ""])
    print_table("Engine decisions/s with audit vs without (same engine, same flows)",
                ["store: path", "audit", "no audit", "audit / no audit"], rows)

    vf = res["verify"]
    rows = [["build: append_encoded, batches of 10,000", fmt_num(vf["build_per_s"]), ""]]
    if vf["verify_log"]:
        rows.append(["verify_log (flowguard.audit.verify)", fmt_num(vf["verify_per_s"]),
                     f"{ratio(vf['verify_per_s'], vf['sha256_per_s']):.3f}"])
        rows.append(["verify_log, check_entries=False (--no-check-entries)",
                     fmt_num(vf["verify_integrity_per_s"]),
                     f"{ratio(vf['verify_integrity_per_s'], vf['sha256_per_s']):.3f}"])
    else:
        rows.append(["verify_log: flowguard.audit.verify does not exist", "—", ""])
    rows += [["recompute only: read + leaf hash + compact range", fmt_num(vf["recompute_per_s"]),
              f"{ratio(vf['recompute_per_s'], vf['sha256_per_s']):.3f}"],
             ["baseline: hashlib.sha256(0x00 || entry), entries in memory",
              fmt_num(vf["sha256_per_s"]), "1.000"],
             ["reference: the SELECTs that read the entries, nothing else",
              fmt_num(vf["read_per_s"]), f"{ratio(vf['read_per_s'], vf['sha256_per_s']):.3f}"]]
    print_table(f"Verify, SQLite log of {vf['entries']:,} entries ({vf['db_mb']:,.0f} MB, "
                f"{vf['checkpoints']:,} checkpoints)", ["figure", "entries/s", "/ baseline"],
                rows)
    if "profile" in vf:
        pr = vf["profile"]
        print(f"\nverify_log profile (one run, {pr['wall_s']:.2f} s under cProfile, "
              f"{pr['profiled_total_s']:.2f} s attributed):")
        for group, own in pr["groups"].items():
            print(f"  {group:<55} {own:6.2f} s  {own / pr['profiled_total_s']:5.1%}")
        print("  top functions by own time:")
        for row in pr["top"]:
            print(f"    {row['own_s']:6.3f} s  {row['calls']:>9,}  {row['function']}")

    pf = vf["proofs"]
    rows = []
    for name in ("inclusion", "consistency"):
        f = pf[name]
        rows.append([f"{name} proof", f"{f['bytes_min']}-{f['bytes_max']} "
                     f"(median {f['bytes_median']})", fmt_num(f["p50_us"], 1),
                     fmt_num(f["p99_us"], 1), f"{ratio(f['p50_us'], pf['lookup_p50_us']):.1f}",
                     fmt_num(f["verify_p50_us"], 1)])
    rows.append(["baseline: one stored node by key", "32", fmt_num(pf["lookup_p50_us"], 1),
                 "", "1.0", ""])
    print_table(f"Proofs at {pf['size']:,} entries (1,000 random each; consistency from a "
                "random old size to the full tree)",
                ["proof", "bytes", "p50 µs", "p99 µs", "p50 / baseline", "verify p50 µs"],
                rows)

    print()
    bars = []
    sq = ap.get("sqlite/100")
    if sq:
        others = ", ".join(f"batch {b}: {ap[f'sqlite/{b}']['append_per_s']:,.0f}/s"
                           for b in (10, 1000))
        bars.append((f"SQLite ≥ 20,000 appends/s with group commit (batch 100; {others})",
                     f"{sq['append_per_s']:,.0f}/s", sq["append_per_s"] >= BAR_APPENDS))
    if vf["verify_log"]:
        bars.append((f"verify ≥ 200,000 entries/s ({vf['entries']:,}-entry log)",
                     f"{vf['verify_per_s']:,.0f}/s", vf["verify_per_s"] >= BAR_VERIFY))
        bars.append(("verify --no-check-entries (tree, nodes, signatures, consistency) "
                     "≥ 200,000 entries/s", f"{vf['verify_integrity_per_s']:,.0f}/s",
                     vf["verify_integrity_per_s"] >= BAR_VERIFY))
    else:
        bars.append(("verify ≥ 200,000 entries/s (verify_log missing; recompute only)",
                     f"{vf['recompute_per_s']:,.0f}/s", None))
    res["bars"] = {}
    for name, val, ok in bars:
        verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
        res["bars"][name] = {"value": val, "verdict": verdict}
        print(f"bar: {name}: {val} -- {verdict}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--quick", action="store_true",
                    help="50,000-entry log, a tenth of the appends, 0.5 s paths, 1 run")
    ap.add_argument("--entries", type=int, help="entries of the verify/proof log "
                    "(default 1,000,000; --quick 50,000)")
    ap.add_argument("--flows", type=int, default=20_000, help="workload flows (distinct entries)")
    ap.add_argument("--budget", type=float, help="seconds per engine path (default 2; quick 0.5)")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    ap.add_argument("--profile", action="store_true", help="profile verify_log even if it "
                    "meets its target")
    ap.add_argument("--workdir", help="put databases here instead of a temporary folder")
    ap.add_argument("--json", dest="json_out", help="write the figures as JSON to this file")
    a = ap.parse_args(argv)
    if a.quick:
        a.repeat = 1 if "--repeat" not in (argv or sys.argv) else a.repeat
        a.flows = min(a.flows, 5000)
    a.entries = a.entries or (50_000 if a.quick else 1_000_000)
    a.budget = a.budget or (0.5 if a.quick else 2.0)

    import sqlite3

    import flowguard
    from flowguard.audit.note import Signer, generate_key

    stores = ["sqlite"]
    why = None if a.no_postgres else postgres_reachable()
    if not a.no_postgres and why is None:
        stores.append("postgresql")
    res: dict[str, Any] = {
        "params": {"repeat": a.repeat, "quick": a.quick, "entries": a.entries,
                   "flows": a.flows, "budget_s": a.budget},
        "postgresql": "--no-postgres" if a.no_postgres else why,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "sqlite": sqlite3.sqlite_version,
                    "flowguard": getattr(flowguard, "__version__", "?"),
                    "loadavg_start": os.getloadavg()[0]}}
    if "postgresql" in stores:
        import psycopg

        with psycopg.connect(POSTGRES_URL) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            res["machine"]["postgresql"] = f"PostgreSQL {row[0] if row else '?'}"
    signer = Signer(generate_key(ORIGIN)[0])
    tmp = None if a.workdir else tempfile.TemporaryDirectory(prefix="flowguard-bench-audit-")
    wdir = a.workdir or (tmp.name if tmp else ".")
    try:
        t0 = time.perf_counter()
        ent = make_entries(a, wdir)
        res["entries"] = {"count": len(ent["encoded"]), "entry_bytes": ent["entry_bytes"],
                          "permits": ent["permits"], "setup_s": ent["setup_s"]}
        print(f"  entries ready in {ent['setup_s']:.1f} s", file=sys.stderr)
        res["appends"] = bench_appends(a, ent, stores, signer, wdir)
        res["engine"] = bench_engine_audit(a, ent, stores, signer, wdir)
        res["verify"] = bench_verify(a, ent, signer, wdir)
        res["total_s"] = time.perf_counter() - t0
        res["machine"]["loadavg_end"] = os.getloadavg()[0]
        report(res, stores)
        print(f"\n(total {res['total_s']:.0f} s)")
    finally:
        if tmp is not None:
            tmp.cleanup()
    if a.json_out:
        with open(a.json_out, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=1, default=str)
            fh.write("\n")
        print(f"figures written to {a.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
