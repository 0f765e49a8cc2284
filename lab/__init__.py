"""mTLS load-balancer reproduction lab: PKI, configs, compose stack and probes."""

__version__ = "0.1.0"
