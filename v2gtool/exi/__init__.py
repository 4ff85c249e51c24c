"""Schema-informed EXI (W3C EXI 1.0) for the V2G message sets: the only place that knows about bits.

Use :func:`v2gtool.exi.codec.decode` / :func:`v2gtool.exi.codec.encode` with a schema set from
:mod:`v2gtool.exi.namespaces`; messages are the generated dataclasses of :mod:`v2gtool.messages`.
"""
