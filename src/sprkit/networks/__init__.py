"""SPR on real networks in PyTorch, for any model: structures from the dependency graph ->
penalties -> pruning rules -> compression -> serialization, behind one object (SPRPruner)."""

from sprkit.networks.compression import Compression, CompressionError, compress, fold_batchnorm
from sprkit.networks.penalties import GroupLassoPenalty, SPRPenalty
from sprkit.networks.pruner import SPRPruner
from sprkit.networks.serialization import load_compressed, save_compressed
from sprkit.networks.structures import Structures, derive_structures

__all__ = [
    "Compression",
    "CompressionError",
    "GroupLassoPenalty",
    "SPRPenalty",
    "SPRPruner",
    "Structures",
    "compress",
    "derive_structures",
    "fold_batchnorm",
    "load_compressed",
    "save_compressed",
]
