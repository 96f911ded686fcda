"""zipkit's benchmarks: corpora, baselines and the scripts that time them (see README.md)."""
