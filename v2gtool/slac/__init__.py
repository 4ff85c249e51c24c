"""ISO 15118-3 SLAC: HomePlug Green PHY management messages, the sans-IO EVSE and EV matching
processes, NMK/NID keys, a simulated QCA7000 modem and the drivers that run them on a link."""
