"""Benchmarks (``diemcau bench ...``; figures and how to run them in bench/README.md).

Built on the load generator's parts (``loadtest.server``, ``loadtest.media``, ``loadtest.client``,
``loadtest.childproc``): bench imports loadtest, never the other way round, and neither imports
the CLI (``diemcau``)."""
