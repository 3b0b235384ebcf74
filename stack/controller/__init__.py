"""The controller: desired state in a store, placement, and the agent and admin services."""
