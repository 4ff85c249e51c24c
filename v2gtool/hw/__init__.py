"""The hardware layer: Control Pilot, contactors, IMD, power module, inlet sensors, emergency stop.

``interfaces`` has the Protocols, ``sim`` / ``gpiod`` / ``serial`` the backends, ``interlock`` the
one safety core every contactor command passes through, ``station`` binds them in a control loop.
"""
