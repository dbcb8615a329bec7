"""Fault-injection harness: a TCP fault proxy, an execution-history checker
and helpers to run and restart worker processes (see the modules)."""
