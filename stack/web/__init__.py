"""HTTP for the daemons: the metrics page and the web console (see server.py)."""
