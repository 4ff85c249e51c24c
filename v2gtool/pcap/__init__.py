"""Reading and dissecting V2G captures: pcap/pcapng, link layers, TCP, TLS, V2GTP, EXI and analysis.

Every stage is sans-IO (DESIGN.md rule 1): it takes bytes and returns records, so a file, stdin and a
growing trace all run through the same code, in memory that does not grow with the capture.
"""
