"""Typed V2G messages generated from the schemas by tools/exi_compiler.py (do not edit)."""
