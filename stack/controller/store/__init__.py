"""Where the controller keeps its desired state: a small key/value interface."""
