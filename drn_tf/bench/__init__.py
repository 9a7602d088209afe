"""Measured reports: ``drn benchmark`` (latency, throughput, FLOP rates against this machine's measured
peak) and ``drn export report`` (quality and latency of every export and runtime)."""
