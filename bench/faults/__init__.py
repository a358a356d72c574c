"""Faults (``python -m bench.faults``): the cluster profile under load while parts die."""
