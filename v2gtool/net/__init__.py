"""Transports: raw Ethernet, UDP multicast, TCP + TLS 1.3, pcap."""
