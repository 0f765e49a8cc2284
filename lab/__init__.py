"""mTLS load-balancer reproduction lab: PKI, configs, compose stack and probes."""

__version__ = "0.2.0"
