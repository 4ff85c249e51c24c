"""Transports at the edge of the sans-IO cores: raw Ethernet, pcap writing."""
