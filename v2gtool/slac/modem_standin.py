"""Run :class:`~v2gtool.slac.modem_sim.HubModemStandIn` on one port of a hub-mode bridge:
``python -m v2gtool.slac.modem_standin --iface modem0 [--attenuation 20] [--set-key-result 1]``.

This is how the interop tests give pyslac and open-plc-utils the modem they expect without
hardware (root; the port lives in a network namespace the test created).
"""

from __future__ import annotations

import argparse
import time

from v2gtool.net.rawsock import RawSocketLink
from v2gtool.slac import mme
from v2gtool.slac.modem_sim import AttenuationModel, HubModemStandIn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iface", required=True)
    parser.add_argument("--attenuation", type=float, default=20.0, help="EV -> EVSE attenuation, dB")
    parser.add_argument(
        "--set-key-result",
        type=int,
        default=0,
        help="CM_SET_KEY.CNF Result: 0 (HomePlug AV) or 1 (what open-plc-utils expects)",
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="stop after this long")
    args = parser.parse_args(argv)
    standin = HubModemStandIn(AttenuationModel(base_db=args.attenuation), set_key_result=args.set_key_result)
    end = time.monotonic() + args.seconds
    with RawSocketLink(args.iface, mme.ETHERTYPE_HOMEPLUG_AV) as link:
        print(f"modem stand-in on {args.iface}", flush=True)
        while (left := end - time.monotonic()) > 0:
            frame = link.recv(min(left, 0.5))
            if frame is not None:
                for reply in standin.on_frame(frame, time.monotonic()):
                    link.send(reply)


if __name__ == "__main__":
    main()
