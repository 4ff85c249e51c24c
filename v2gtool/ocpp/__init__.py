"""OCPP 2.0.1 / 2.1: the station bridge and the virtual power plant (:mod:`v2gtool.ocpp.csms`)."""
