"""ISO 15118-20 DC and DC_BPT sessions: one state table, sans-IO SECC and EVCC engines."""
