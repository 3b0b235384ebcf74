"""The parts of bench/chaos.py: a fleet to break, faults to break it with, and the checks
that say whether anything was lost (see bench/chaos.py for the whole picture)."""
