"""One module per hardware block. Blocks talk to each other only through ports."""

from sparsesim.components.dram import Dram
from sparsesim.components.global_buffer import GlobalBuffer
from sparsesim.components.noc import Noc
from sparsesim.components.pe_array import PeArray

__all__ = ["Dram", "GlobalBuffer", "Noc", "PeArray"]
