"""Test doubles that speak real HTTP: a Runpod endpoint, a worker and a loopback server.

Used by tests/api and by scripts/loadtest.py and scripts/bench_api.py; never by the service.
"""
