"""``v2gtool doctor``: is this machine ready to be an SECC, and how to fix what is not.

:mod:`.checks` holds the checks, :mod:`.environment` what they read from the machine (injectable),
:mod:`.firewall` the nftables analysis, :mod:`.findings` the result type.
"""
