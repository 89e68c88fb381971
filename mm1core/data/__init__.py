"""Training and evaluation data. Importing this package does not import torch."""

from mm1core.registry import Registry

# name -> one-line description; builders live in mm1core.data.datamodule
DATA_SOURCES: Registry[str] = Registry("data source")
DATA_SOURCES.register("synthetic", "the embedded, procedurally generated world of shapes (no downloads)")

__all__ = ["DATA_SOURCES"]
