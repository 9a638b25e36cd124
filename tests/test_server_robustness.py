"""The HTTP service under attack (issue 13, items 2-5): read as the threat model of what a
client may try against `flowguard serve` with its limits on by default, on real uvicorn
processes (`flowguard serve`, several workers, two servers on one PostgreSQL).

- A replayed `X-Request-Id` is refused whatever worker or server receives it; ids are per
  token, and kept for a time window, not a count.
- A policy reload reaches every worker of every server before any answers with it.
- Slow or huge headers, unfinished bodies and tokenless bodies cannot starve the service.
- Big batches do not stall single checks (the figures are in bench/bench_server.py).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowguard.policy import load_policy
from flowguard.server.shared import SharedState

from .conftest import postgres_schema
from .test_server import FLOW, Served, Setup, free_port, make_setup, start_cli_server

EMPLOYER_DATA = "data: [identity.name, identity.contact, work]"


class Cluster:
    """Servers started with `flowguard serve`; requests go to them round-robin, each on a
    new connection (`Connection: close`), so the kernel spreads them over the workers."""

    def __init__(self, setup: Setup, servers: int = 1, *extra: str) -> None:
        self.setup = setup
        self.ports = [free_port() for _ in range(servers)]
        self.processes = []
        try:
            for port in self.ports:
                self.processes.append(start_cli_server(setup, port, *extra))
        except Exception:
            self.stop()
            raise
        self._next = 0

    def url(self, server: int | None = None) -> str:
        if server is None:
            server = self._next % len(self.ports)
            self._next += 1
        return f"http://127.0.0.1:{self.ports[server]}"

    def post(self, path: str, body: Any, token: str, *, request_id: str | None = None,
             server: int | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.setup.token[token]}",
                   "X-Request-Id": request_id or uuid.uuid4().hex, "Connection": "close"}
        return httpx.post(self.url(server) + path, json=body, headers=headers, timeout=60)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.communicate(timeout=60)
            except Exception:
                process.kill()


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return make_setup(tmp_path)


@pytest.fixture
def two_workers(setup: Setup) -> Iterator[Cluster]:
    cluster = Cluster(setup, 1, "--workers", "2")
    yield cluster
    cluster.stop()


def concurrently(count: int, call: Any) -> list[Any]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


# --------------------------------------------------------------------------- replay


def test_one_request_id_used_ten_times_at_once_over_two_workers_is_accepted_once(
        two_workers: Cluster) -> None:
    request_id = uuid.uuid4().hex
    statuses = concurrently(10, lambda: two_workers.post(
        "/v1/check", FLOW, "kommune", request_id=request_id).status_code)
    assert sorted(statuses) == [200] + [409] * 9


def test_request_ids_are_per_token(two_workers: Cluster) -> None:
    """The café cannot burn the municipality's next request id."""
    request_id = uuid.uuid4().hex
    cafe = two_workers.post("/v1/check", FLOW, "cafe", request_id=request_id)
    assert cafe.status_code == 403  # its id is claimed, the flow is not its to check
    assert two_workers.post("/v1/check", FLOW, "kommune",
                            request_id=request_id).status_code == 200
    assert two_workers.post("/v1/check", FLOW, "kommune",
                            request_id=request_id).status_code == 409


def test_the_replay_window_is_a_time_not_a_count(tmp_path: Path) -> None:
    shared = SharedState(f"sqlite:///{tmp_path / 'shared.db'}", window=600)
    try:
        assert shared.claim("kommune", "old-request", now=1000.0)
        for n in range(20_000):  # many other ids do not push the old one out
            shared.claim("cafe", f"flood-{n:08}", now=1001.0)
        assert not shared.claim("kommune", "old-request", now=1599.0)
        assert shared.claim("kommune", "old-request", now=1601.0)  # the window has passed
        # expired ids are pruned
        assert shared.claim("kommune", "later", now=5000.0)
        assert shared.replay_ids() == 1
    finally:
        shared.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["id-1", "id-2"]),
                          st.floats(0, 30)), max_size=25))
def test_a_claim_is_accepted_exactly_when_no_use_of_it_is_within_the_window(
        uses: list[tuple[str, str, float]]) -> None:
    shared = SharedState(None, window=10)
    try:
        now = 0.0
        accepted: dict[tuple[str, str], float] = {}
        for token, request_id, step in uses:
            now += step
            expected = (token, request_id) not in accepted or \
                now - accepted[(token, request_id)] > 10
            got = shared.claim(token, request_id, now=now)
            assert got == expected
            if got:
                accepted[(token, request_id)] = now
    finally:
        shared.close()


# --------------------------------------------------------------------------- reload


def test_a_reload_reaches_every_worker_before_it_answers(two_workers: Cluster,
                                                         setup: Setup) -> None:
    before = [two_workers.post("/v1/check", FLOW, "kommune").json() for _ in range(6)]
    assert {d["decision"] for d in before} == {"permit"}
    policy_file = setup.policy / "policy.yaml"
    policy_file.write_text(policy_file.read_text().replace(
        EMPLOYER_DATA, "data: [identity.contact, work]"))
    reload = two_workers.post("/v1/policy/reload", None, "admin")
    assert reload.json()["activated"] is True
    new_digest = reload.json()["digest"]
    assert new_digest == load_policy(setup.policy).digest
    after = [two_workers.post("/v1/check", FLOW, "kommune").json() for _ in range(16)]
    assert {d["policy_digest"] for d in after} == {new_digest}
    assert {d["decision"] for d in after} == {"deny"}


# --------------------------------------------------------------------------- exhaustion


def _partial(port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    return s


def test_slow_connections_do_not_starve_healthz_and_are_dropped(setup: Setup) -> None:
    port = free_port()
    process = start_cli_server(setup, port, "--request-timeout", "3")
    held: list[socket.socket] = []
    try:
        for _ in range(1000):
            held.append(_partial(port, b"POST /v1/check HTTP/1.1\r\nHost: x\r\nX-A: "))
        latencies = []
        for _ in range(20):
            started = time.monotonic()
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200
        assert max(latencies) < 1.0
        # the deadline drops them: each is answered 408 and closed
        time.sleep(3.5)
        for s in held[:20]:
            s.settimeout(5)
            answer = s.recv(1024)
            assert answer.startswith(b"HTTP/1.1 408")
            assert s.recv(1024) == b""
    finally:
        for s in held:
            s.close()
        process.terminate()
        process.communicate(timeout=60)


def test_huge_headers_tokenless_bodies_and_silent_connections(setup: Setup) -> None:
    port = free_port()
    process = start_cli_server(setup, port, "--request-timeout", "2",
                               "--max-header-bytes", "16384")
    try:
        # a header over the cap: 431 and closed, while it is still being sent
        s = _partial(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000)
        assert s.recv(1024).startswith(b"HTTP/1.1 431")
        s.close()
        # a body announced without a token: 401 before a byte of the body is sent
        s = _partial(port, b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: 900000\r\n\r\n")
        s.settimeout(1.5)
        assert s.recv(1024).startswith(b"HTTP/1.1 401")
        s.close()
        # with a token, an unfinished body runs into the deadline
        s = _partial(port, b"POST /v1/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                           + setup.token["kommune"].encode() + b"\r\nX-Request-Id: "
                           + uuid.uuid4().hex.encode()
                           + b"\r\nContent-Length: 500\r\n\r\n{\"sender\"")
        s.settimeout(5)
        started = time.monotonic()
        assert s.recv(1024).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 3.5
        s.close()
        # a connection that never says anything is closed by the same deadline
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert s.recv(1024).startswith(b"HTTP/1.1 408")
        s.close()
    finally:
        process.terminate()
        process.communicate(timeout=60)


def test_categories_are_capped_per_flow_and_per_batch(setup: Setup) -> None:
    served = Served(setup.config(max_categories_per_flow=3, max_categories_per_batch=8))
    try:
        kommune = setup.token["kommune"]
        four = {**FLOW, "data": ["identity.name", "identity.contact", "work.preferences",
                                 "work.schedule"]}
        refused = served.post("/v1/check", four, kommune)
        assert refused.status_code == 413 and "at most 3 per flow" in refused.json()["detail"]
        three = {**four, "data": four["data"][:3]}
        assert served.post("/v1/check", three, kommune).status_code == 200
        batch = served.post("/v1/check/batch", {"flows": [three] * 3}, kommune)
        assert batch.status_code == 413 and "at most 8" in batch.json()["detail"]
        assert served.post("/v1/check/batch", {"flows": [three] * 2},
                           kommune).status_code == 200
    finally:
        served.stop()


def test_big_batches_run_beside_single_checks(two_workers: Cluster) -> None:
    """Functional side of item 5 (the latency bar is a benchmark): batches over the
    offload threshold are decided in the batch pool and answered in full."""
    flows = [{**FLOW, "subject": f"citizen-{n:04}"} for n in range(50)]
    stop = threading.Event()
    batch_statuses: list[int] = []

    def loop_batches() -> None:
        while not stop.is_set():
            batch_statuses.append(two_workers.post("/v1/check/batch", {"flows": flows},
                                                   "kommune").status_code)

    worker = threading.Thread(target=loop_batches)
    worker.start()
    try:
        singles = [two_workers.post("/v1/check", FLOW, "kommune") for _ in range(10)]
    finally:
        stop.set()
        worker.join()
    assert all(r.status_code == 200 and r.json()["decision"] == "permit" for r in singles)
    assert batch_statuses and set(batch_statuses) == {200}


# --------------------------------------------------------------------------- two servers


def test_two_servers_with_two_workers_on_one_postgresql(tmp_path: Path) -> None:
    with postgres_schema() as registry, postgres_schema() as audit:
        setup = make_setup(tmp_path, registry=registry, audit=audit)
        cluster = Cluster(setup, 2, "--workers", "2")
        try:
            # replay refused across all four processes
            request_id = uuid.uuid4().hex
            statuses = concurrently(12, lambda: cluster.post(
                "/v1/check", FLOW, "kommune", request_id=request_id).status_code)
            assert sorted(statuses) == [200] + [409] * 11
            # a withdrawal through one is honoured by the next check through any other
            withdrawn = cluster.post("/v1/consents/k-0042-cafe/withdraw", {},
                                     "kommune", server=0)
            assert withdrawn.status_code == 200
            checks = [cluster.post("/v1/check", FLOW, "kommune", server=n % 2).json()
                      for n in range(8)]
            assert {d["decision"] for d in checks} == {"deny"}
            # a reload through one reaches all four
            policy_file = setup.policy / "policy.yaml"
            policy_file.write_text(policy_file.read_text().replace(
                "Serviceloven", "Serviceloven (ændret)"))
            reload = cluster.post("/v1/policy/reload", None, "admin", server=1)
            assert reload.json()["activated"] is True
            after = [cluster.post("/v1/check", FLOW, "kommune").json() for _ in range(16)]
            assert {d["policy_digest"] for d in after} == {reload.json()["digest"]}
        finally:
            cluster.stop()


# --------------------------------------------------------------------------- operability


def test_metrics_sum_every_worker_and_need_a_token(two_workers: Cluster) -> None:
    for _ in range(6):
        assert two_workers.post("/v1/check", FLOW, "kommune").status_code == 200
    request_id = uuid.uuid4().hex
    two_workers.post("/v1/check", FLOW, "kommune", request_id=request_id)
    assert two_workers.post("/v1/check", FLOW, "kommune",
                            request_id=request_id).status_code == 409
    url = two_workers.url(0) + "/metrics"
    assert httpx.get(url, timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {two_workers.setup.token['reader']}"}
    seen = set()
    for _ in range(4):  # whichever worker answers, it reports both workers' counts
        text = httpx.get(url, headers={**auth, "Connection": "close"}, timeout=10).text
        permits = [line for line in text.splitlines()
                   if line.startswith('flowguard_decisions_total{decision="permit"')]
        seen.add(sum(float(line.rsplit(" ", 1)[1]) for line in permits))
        assert 'flowguard_refusals_total{cause="replay"} 1.0' in text
        assert 'endpoint="/v1/check"' in text and "flowguard_audit_append_seconds" in text
        assert "flowguard_registry_revision_lag" in text
        assert "citizen-" not in text and request_id not in text
    assert seen == {7.0}
