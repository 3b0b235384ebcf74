"""Runnable examples for the README: `python3 -m examples.app`, `python3 -m examples.ticker`."""
