# Benchmarks. The peer benchmark needs its engines in the same Python, e.g.
#   make bench PYTHON=/tmp/peers-venv/bin/python   (bench/peers/README.md)
PYTHON ?= python3
PEERS ?= ../shared/bench-peers
PEER_DATA ?= /tmp/flowbench/default

.PHONY: bench bench-scaling bench-quick

bench:
	$(PYTHON) bench/bench_engine.py
	@if [ -f $(PEERS)/run.py ]; then \
	  set -e; \
	  [ -f $(PEER_DATA)/expected.json ] || $(PYTHON) $(PEERS)/workload.py --out $(PEER_DATA); \
	  $(PYTHON) $(PEERS)/run.py --adapter bench/peers/adapter_flowguard.py --data $(PEER_DATA) \
	    --engines flowguard,reference,casbin-fast --reps 3; \
	else echo "$(PEERS)/run.py not found: peer benchmark skipped"; fi

bench-scaling:
	$(PYTHON) bench/bench_scaling.py

bench-quick:
	$(PYTHON) bench/bench_scaling.py --quick
