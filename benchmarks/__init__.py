"""Benchmarks of robustbench-nas against the tools a user would otherwise pick.

Run all of them with ``python -m benchmarks [--quick] [names...]``; each ``benchmarks/bench_<name>.py`` exposes
``run(quick: bool = False) -> list[dict]`` and writes its records to ``benchmarks/results/<record name>.json``
through :func:`benchmarks.common.save_result`. See ``benchmarks/README.md`` for the latest figures.
"""
