"""``drn benchmark``: latency, throughput and FLOP rates against this machine's measured peak."""
