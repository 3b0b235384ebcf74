"""stackctl, the operator's CLI: typer commands over the controller's AdminService."""
