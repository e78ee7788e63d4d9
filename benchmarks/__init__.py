"""Speed benchmarks of road-repro against the Hugging Face ``Trainer`` and of its own training variants.

Each module measures one thing and returns a tidy DataFrame; :mod:`benchmarks.run_all` runs them all, prints
compact tables and writes ``results/bench/*.csv``. Ratios are always taken between runs of the *same* process
on the same machine, so they mean something where absolute rates do not (a shared CPU, another GPU).
"""
