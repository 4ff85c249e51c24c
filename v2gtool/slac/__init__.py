"""ISO 15118-3 SLAC on HomePlug Green PHY: the MMEs, both matching roles, keys, a simulated modem.

For a session chain:

* :func:`v2gtool.slac.runner.run_slac` ``(role, link, timers, clock) -> SlacResult`` runs one
  role in real time on a link (:class:`v2gtool.net.rawsock.RawSocketLink` to a real QCA7000, or
  :class:`v2gtool.slac.runner.ModemLink` = a veth end behind the simulated modem);
* :class:`v2gtool.slac.cable.SimCable` runs both roles (and adjacent chargers) in-process on a
  virtual clock;
* :class:`v2gtool.slac.machine.SlacResult` carries the peer MAC, RunID, NID/NMK or the
  :class:`v2gtool.slac.diagnosis.Diagnosis` with its exit code.
"""
