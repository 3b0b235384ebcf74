"""Who may talk to whom: certificates, mutual TLS and roles for the control plane.

An agent runs whatever its controller sends, so an unauthenticated channel is
remote code execution on every host. This package keeps the pieces that make
the channel trustworthy: a small CA (`certs`), loading TLS material into gRPC
credentials with clear failures (`tls`), and which role may call what (`roles`).
What needs no cryptography (where the files are, who a certificate names: `layout`,
`tls_files`) is apart, so that a daemon without TLS files never imports it.
It imports neither the agent nor the controller; both (and stackctl) import it.
"""
