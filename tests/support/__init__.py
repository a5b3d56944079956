"""Helpers of the test suite that are not tests: conformance suites, hypothesis strategies
and profiles, fault-test fixtures. What the benchmarks share with the tests is in testkit/."""
