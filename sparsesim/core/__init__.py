"""Kernel of the simulator: components, ports with bandwidth and latency, and energy accounting."""

from sparsesim.core.component import Component
from sparsesim.core.port import Hop, Port, transfer

__all__ = ["Component", "Hop", "Port", "transfer"]
