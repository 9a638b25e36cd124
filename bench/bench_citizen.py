#!/usr/bin/env python3
"""flowguard citizen pages benchmark (issue 17): sign-in to the consent list on loopback.

    python bench/bench_citizen.py              # 50 sign-ins
    python bench/bench_citizen.py --runs 200

Method: the Aalborg Aktiv registry and audit log (SQLite) and a flowguard server with the
citizen pages, and the tests' OIDC provider (RS256 ID tokens), both on 127.0.0.1 in this
process's threads. One sign-in is what a browser does after clicking "Sign in": GET /me/login
(redirect to the provider), GET /authorize (redirect back with a code), GET /me/callback (code
exchanged with PKCE, ID token verified against the JWKS, session cookie set), GET /me/ (the
list, with each consent's standing from the Engine). Timed from the first request to the
list's last byte, with a fresh cookie jar each time (the per-address sign-in limit raised
for the run); the provider's own time is included (it is on loopback too). The first
sign-in (discovery and JWKS fetch) is reported apart. Bar: median <= 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.citizen_fixtures import LOGINS, Browser, start_citizen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        citizen = start_citizen(Path(folder), signins_per_minute=1_000_000)
        try:
            times = []
            for _ in range(args.runs + 1):
                browser = Browser(citizen)
                started = time.perf_counter()
                page = browser.sign_in(LOGINS["citizen-0042"])
                times.append(time.perf_counter() - started)
                browser.close()
                assert page.status_code == 200 and "k-0042-cafe" in page.text
        finally:
            citizen.stop()
    first, rest = times[0], sorted(times[1:])
    print(f"sign-in to the consent list, {args.runs} runs on loopback: "
          f"median {statistics.median(rest) * 1000:.1f} ms, "
          f"p95 {rest[int(0.95 * (len(rest) - 1))] * 1000:.1f} ms, "
          f"first (discovery + JWKS) {first * 1000:.1f} ms; bar <= 1000 ms")


if __name__ == "__main__":
    main()
