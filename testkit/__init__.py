"""Scaffolding shared by the tests (tests/) and the benchmarks (bench/); never shipped.

Demo-key gateways in one process (``gateway_pair``), a gateway in its own OS process
(``harness.GatewayProcess`` running ``ng_process``), the envelope test world
(``envelope_world``), extra RabbitMQ nodes and shovels (``rabbit_nodes``), a cuttable TCP
proxy (``tcp_proxy``), processes that cannot outlive the run that started them
(``lifeline``) and throw-away PostgreSQL schemas (``pg_schemas``). It imports ``gateway`` but never ``pytest`` or anything under ``tests/``:
the benchmarks run without the test suite. Test-only helpers (fixtures, conformance
suites, hypothesis strategies) live in ``tests/support/``.
"""
