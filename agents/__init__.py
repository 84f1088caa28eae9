"""Ways of playing ProxyAlignment-v0 and of measuring them: fixed regimens, heuristic strategies, the exact
optimum, the benchmark, and SB3 agents with their evaluation, reports and TensorBoard summaries."""
