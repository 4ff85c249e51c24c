"""v2gtool: a field toolkit for CCS Type 2 bi-directional DC charging per ISO 15118-20."""

__version__ = "0.1.0"
