"""Load tests of the gateway on loopback: ``python -m bench [scenario ...]``."""
