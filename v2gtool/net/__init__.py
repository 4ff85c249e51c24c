"""Transports at the edge of the sans-IO cores: raw Ethernet, UDP multicast, TCP + TLS 1.3, pcap."""
