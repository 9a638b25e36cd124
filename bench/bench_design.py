#!/usr/bin/env python3
"""Benchmark of `flowguard design`, `flowguard diff` and `flowguard ropa` (issue 5).

Generates, deterministically, a policy with 200 actors (40 organisations of 8 kinds, 5 actors
each), 300 data categories (30 groups of 9 leaves, 3 groups special), 50 purposes (10 with 4
sub-purposes each), 6 sub-processes and 2,000 rules (a fifth forbids; permits on consent or on
a law, with `art9` where they touch special data), a design of 300 flows over it, and two revisions
of the policy: 20 rules changed (12 changed in place, 4 removed, 4 added; 1 %) and a heavy
one, 140 rules changed (100, 20, 20; 7 %). Then it times each
command end to end, as a user runs it (a new `python -m flowguard` process, policy loading and
report writing included), and in process, split into loading, analysis and rendering. The bar
is 5 s for each command (design, diff of the 1 % revision, ropa); the heavy revision's diff is
reported as a stress figure.

    python bench/bench_design.py                  # median of 3 runs
    python bench/bench_design.py --runs 5 --keep /tmp/fg-design
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = {"municipality": "public", "care-home": "public", "health-trust": "public",
         "school": "public", "community-centre": "public", "ngo": "voluntary",
         "employer": "private", "private-provider": "private"}
ROLES = ["case-worker", "clinician", "job-consultant", "manager", "coordinator",
         "nurse", "teacher", "mentor", "researcher", "assistant"]
SUBPROCESSES = ["co-commissioning", "co-design", "co-assessment", "co-delivery",
                "co-review", "co-evaluation"]
LAWS = ["Serviceloven § 12", "Serviceloven § 85", "Beskæftigelsesloven § 5",
        "Sundhedsloven § 43"]
BAR_SECONDS = 5.0


def vocabulary() -> dict[str, Any]:
    organizations = {}
    actors = {}
    kinds = list(KINDS)
    for i in range(40):
        kind = kinds[i % len(kinds)]
        org = f"org-{i:02d}"
        organizations[org] = {"kind": kind, "sector": KINDS[kind], "name": f"Organisation {i}"}
        for j in range(5):
            actors[f"a-{i:02d}-{j}"] = {"organization": org, "role": ROLES[(i + j) % len(ROLES)],
                                        "name": f"Actor {j} of organisation {i}"}
    categories: dict[str, Any] = {}
    for g in range(30):
        group = f"g{g:02d}"
        categories[group] = {"special": g < 3, "description": f"Group {g}"}
        for leaf in range(9):
            categories[f"{group}.c{leaf}"] = {"description": f"Leaf {leaf} of group {g}"}
    purposes: dict[str, Any] = {}
    for p in range(10):
        purposes[f"p{p}"] = {"description": f"Purpose {p}"}
        for q in range(4):
            purposes[f"p{p}.s{q}"] = {"description": f"Sub-purpose {q} of purpose {p}"}
    subprocesses = {s: {"order": i + 1, "co_produced": i > 0} for i, s in enumerate(SUBPROCESSES)}
    return {"organizations": organizations, "actors": actors, "data_categories": categories,
            "purposes": purposes, "subprocesses": subprocesses}


def random_rule(rng: random.Random, vocab: dict[str, Any], rule_id: str) -> dict[str, Any]:
    orgs = list(vocab["organizations"])
    actors = list(vocab["actors"])
    groups = [c for c in vocab["data_categories"] if "." not in c]
    leaves = [c for c in vocab["data_categories"] if "." in c]
    purposes = list(vocab["purposes"])

    def selector() -> dict[str, Any]:
        choice = rng.random()
        if choice < 0.3:
            return {"kind": rng.choice(list(KINDS))}
        if choice < 0.55:
            return {"organization": rng.sample(orgs, rng.randint(1, 2))}
        if choice < 0.7:
            return {"role": rng.choice(ROLES)}
        if choice < 0.8:
            return {"kind": rng.choice(list(KINDS)), "role": rng.choice(ROLES)}
        if choice < 0.9:
            return {"actor": rng.sample(actors, rng.randint(1, 3))}
        return {"sector": rng.choice(["public", "private", "voluntary"])}

    data = [rng.choice(groups) if rng.random() < 0.25 else rng.choice(leaves)
            for _ in range(rng.randint(1, 3))]
    data = list(dict.fromkeys(data))
    rule: dict[str, Any] = {"id": rule_id}
    forbid = rng.random() < 0.2
    rule["effect"] = "forbid" if forbid else "permit"
    if rng.random() < 0.5:
        rule["sender"] = selector()
    if not forbid or rng.random() < 0.7:
        rule["recipient"] = selector()
    rule["data"] = data
    if rng.random() < 0.7:
        rule["purposes"] = rng.sample(purposes, rng.randint(1, 2))
    if rng.random() < 0.6:
        rule["subprocesses"] = rng.sample(SUBPROCESSES, rng.randint(1, 2))
    if not forbid:
        if rng.random() < 0.6:
            rule["basis"] = "consent"
        else:
            rule["basis"] = rng.choice(["public-task", "legal-obligation"])
            rule["law"] = rng.choice(LAWS)
            if any(d.split(".")[0] in ("g00", "g01", "g02") for d in data):
                rule["art9"] = "social-protection"
        if rng.random() < 0.3:
            rule["obligations"] = ["Delete after use"]
    return rule


def policy_document(vocab: dict[str, Any], rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": 1,
            "service": {"id": "bench", "name": "Benchmark service", "controller": "org-00"},
            "jurisdictions": {"DK": {"majority_age": 18, "consent_age": 15}},
            "default_jurisdiction": "DK", **vocab, "rules": rules}


def design_document(rng: random.Random, vocab: dict[str, Any], flows: int) -> dict[str, Any]:
    actors = list(vocab["actors"])
    leaves = [c for c in vocab["data_categories"] if "." in c]
    groups = [c for c in vocab["data_categories"] if "." not in c]
    purposes = list(vocab["purposes"])
    items = []
    for i in range(flows):
        sender = "citizen" if i % 25 == 0 else rng.choice(actors)
        data = [rng.choice(groups) if rng.random() < 0.1 else rng.choice(leaves)
                for _ in range(rng.randint(1, 3))]
        items.append({"id": f"f{i}", "subprocess": rng.choice(SUBPROCESSES), "from": sender,
                      "to": rng.choice(actors), "data": list(dict.fromkeys(data)),
                      "purpose": rng.choice(purposes)})
    holds = {a: rng.sample(groups, 3) for a in rng.sample(actors, 50)}
    return {"design": {"service": "bench", "name": "Benchmark design"}, "holds": holds,
            "flows": items}


def revise(rng: random.Random, vocab: dict[str, Any], rules: list[dict[str, Any]],
           changed: int, removed: int, added: int, tag: str) -> list[dict[str, Any]]:
    """A revision of the rules: some changed in place (same id), some removed, some added."""
    revised = [dict(r) for r in rules]
    for i in rng.sample(range(len(rules)), changed):
        revised[i] = random_rule(rng, vocab, revised[i]["id"])
    gone = set(rng.sample(range(len(rules)), removed))
    revised = [r for i, r in enumerate(revised) if i not in gone]
    revised += [random_rule(rng, vocab, f"r-{tag}-{i:02d}") for i in range(added)]
    return revised


def generate(folder: Path, seed: int = 5, flows: int = 300) -> dict[str, Path]:
    """old.yaml (2,000 rules); new.yaml, a revision changing 20 of them (12 changed, 4
    removed, 4 added: 1 %); heavy.yaml, one changing 140 (7 %); design.yaml (300 flows)."""
    rng = random.Random(seed)
    vocab = vocabulary()
    rules = [random_rule(rng, vocab, f"r{i:04d}") for i in range(2000)]
    new_rules = revise(rng, vocab, rules, 12, 4, 4, "new")
    heavy_rules = revise(rng, vocab, rules, 100, 20, 20, "heavy")
    paths = {"old": folder / "old.yaml", "new": folder / "new.yaml",
             "heavy": folder / "heavy.yaml", "design": folder / "design.yaml"}
    dump = {"Dumper": getattr(yaml, "CSafeDumper", yaml.SafeDumper), "sort_keys": False,
            "allow_unicode": True}
    for name, chosen in (("old", rules), ("new", new_rules), ("heavy", heavy_rules)):
        paths[name].write_text(yaml.dump(policy_document(vocab, chosen), **dump),
                               encoding="utf-8")
    paths["design"].write_text(yaml.dump(design_document(rng, vocab, flows), **dump),
                               encoding="utf-8")
    return paths


def timed(func: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def cli(*args: str) -> Callable[[], int]:
    def run() -> int:
        done = subprocess.run([sys.executable, "-m", "flowguard", *args], cwd=ROOT,
                              capture_output=True, text=True, check=False)
        if done.returncode not in (0, 1):
            raise SystemExit(f"flowguard {' '.join(args)} failed:\n{done.stderr}")
        return done.returncode
    return run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="median of this many runs")
    ap.add_argument("--keep", help="write the generated files and reports to this folder")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fg-bench-design-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths = generate(folder)
        from flowguard.analysis import Reach, diff_policies, ropa
        from flowguard.design import PolicyIndex, analyse_design, load_design
        from flowguard.policy import load_policy
        from flowguard.reports import (
            design_html,
            design_json,
            design_sarif,
            diff_json,
            ropa_html,
            ropa_markdown,
        )

        rows: list[tuple[str, float]] = []
        load_s, old = timed(lambda: load_policy(paths["old"]), args.runs)
        new = load_policy(paths["new"])
        heavy = load_policy(paths["heavy"])
        rows.append(("load_policy (2,000 rules)", load_s))
        s, loaded = timed(lambda: load_design(paths["design"], old), args.runs)
        rows.append(("load_design (300 flows)", s))
        s, index = timed(lambda: PolicyIndex(old), args.runs)
        rows.append(("PolicyIndex (compile)", s))
        s, report = timed(lambda: analyse_design(old, loaded, index), args.runs)
        rows.append(("analyse_design", s))
        s, _ = timed(lambda: (design_json(report), design_sarif(report), design_html(report)),
                     args.runs)
        rows.append(("render JSON + SARIF + HTML", s))
        s, diff = timed(lambda: diff_policies(old, new), args.runs)
        rows.append(("diff_policies (20 rules changed)", s))
        s, _ = timed(lambda: diff_json(diff), args.runs)
        rows.append(("render diff JSON", s))
        s, worst = timed(lambda: diff_policies(old, heavy), args.runs)
        rows.append(("diff_policies (140 rules changed)", s))
        s, _ = timed(lambda: diff_json(worst), args.runs)
        rows.append(("render diff JSON (140 rules changed)", s))
        s, record = timed(lambda: ropa(old, Reach(PolicyIndex(old))), args.runs)
        rows.append(("ropa (index + reach + record)", s))
        s, _ = timed(lambda: (ropa_markdown(record), ropa_html(record)), args.runs)
        rows.append(("render ROPA Markdown + HTML", s))

        out = folder
        commands = [
            ("flowguard design --json -o ... --html ...",
             cli("design", str(paths["old"]), str(paths["design"]), "--json", "-o",
                 str(out / "design.json"), "--html", str(out / "design.html"))),
            ("flowguard design --sarif -o ...",
             cli("design", str(paths["old"]), str(paths["design"]), "--sarif", "-o",
                 str(out / "design.sarif"))),
            ("flowguard diff OLD NEW --json -o ... (20 changed)",
             cli("diff", str(paths["old"]), str(paths["new"]), "--json", "-o",
                 str(out / "diff.json"))),
            ("flowguard diff OLD NEW --markdown -o ... (20)",
             cli("diff", str(paths["old"]), str(paths["new"]), "--markdown", "-o",
                 str(out / "diff.md"))),
            ("flowguard diff OLD HEAVY --json -o ... (140)",
             cli("diff", str(paths["old"]), str(paths["heavy"]), "--json", "-o",
                 str(out / "diff-heavy.json"))),
            ("flowguard ropa -o ... --html ...",
             cli("ropa", str(paths["old"]), "-o", str(out / "ropa.md"), "--html",
                 str(out / "ropa.html"))),
        ]
        # the bar: design, diff of a revision, ropa; the heavy revision is a stress figure
        stress = {"flowguard diff OLD HEAVY --json -o ... (140)"}
        cli_rows = [(name, timed(run, args.runs)[0]) for name, run in commands]
        print(f"policy: {len(old.actors)} actors, {len(old.data_categories)} categories "
              f"({len(old.category_tree.all_leaves())} leaves), {len(old.purposes)} purposes, "
              f"{len(old.subprocesses)} sub-processes, {len(old.rules)} rules; design: "
              f"{len(report.flows)} flows; diff: {len(diff.changes)} statements "
              f"({len(worst.changes)} for the heavy revision); ropa: "
              f"{len(record.activities)} activities")
        print(f"\nin process, median of {args.runs}:")
        for name, seconds in rows:
            print(f"  {name:<40} {seconds:7.3f} s")
        print(f"\nend to end (new process, load + analysis + writing), median of {args.runs}:")
        worst_cli = 0.0
        for name, seconds in cli_rows:
            if name in stress:
                print(f"  {name:<46} {seconds:7.3f} s  (stress figure, not part of the bar)")
                continue
            worst_cli = max(worst_cli, seconds)
            mark = "ok" if seconds <= BAR_SECONDS else "OVER THE BAR"
            print(f"  {name:<46} {seconds:7.3f} s  {mark}")
        print(f"\nbar {BAR_SECONDS:.0f} s per command: "
              f"{'met' if worst_cli <= BAR_SECONDS else 'NOT met'}")
        if worst_cli > BAR_SECONDS:
            sys.exit(1)


if __name__ == "__main__":
    main()
