"""Prometheus metrics of the controller and the agent.

What happens (a rollout begins, an admin call ends, a store commit takes so long) is
counted where it happens, in plain numbers (`tally`), by code that never imports
prometheus_client. What is (processes running, memory, agents up) is read from the
domain state when a scraper asks (`fleet`, and each daemon's collector). Only the
daemon that serves `/metrics` imports prometheus_client (`exposition`).
"""
