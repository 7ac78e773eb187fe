"""Benchmarks: functrain against hand-written JAX + optax, equinox + optax and PyTorch.

One command runs every workload, writes ``benchmarks/results/results.json`` and
``benchmarks/results/results.md``, and regenerates the table in ``README.md`` between the markers
``<!-- bench-table -->`` and ``<!-- /bench-table -->``::

    python -m benchmarks                 # full CPU run (about 10 minutes on 2 cores)
    python -m benchmarks --quick         # same workloads, fewer/shorter repeats (development)
    python -m benchmarks --smoke         # tiny shapes, 1 repeat: checks the plumbing only
    python -m benchmarks --gpu           # on jax.devices()[0] (a GPU), results_gpu.*, README
                                         # table between <!-- bench-table-gpu --> markers
    python -m benchmarks --workloads mlp,optim --repeats 9
    python -m benchmarks --readme-only   # rebuild results.md and the README table from the JSON

Workloads (one module each): :mod:`benchmarks.mlp`, :mod:`benchmarks.convnet`,
:mod:`benchmarks.convnet_ops` (the convnet's step op by op), :mod:`benchmarks.optimizers`,
:mod:`benchmarks.seeds`, :mod:`benchmarks.compile_time`, :mod:`benchmarks.tricks_compile` (one
``functrain tricks`` row compiled cold and from the persistent cache, in fresh subprocesses).
Contenders of a workload run in one process, interleaved (every round runs each contender once, in a
fresh seeded order), and each reports the median of its repeats; ratios are always *functrain ÷ contender* for
throughputs and *functrain ÷ contender* for times (so a throughput ratio above 1 and a time ratio
below 1 favour functrain).
"""
