"""IEEE C37.118.2 synchrophasor client, sans-IO, for MicroPython and CPython.

``frames`` reads every frame a stream carries (CFG-1/CFG-2, data) and makes commands,
with their CRC; ``stream`` cuts frames out of a TCP byte stream split
anywhere and resyncs after a bad one; ``client`` holds the session (ask for
the configuration, start, stop, read data frames) as a sans-IO core;
``connection`` is a thin blocking helper over ``lightnode.drivers.link.TcpLink``;
``codec`` encodes what a PMU sends (a board loads only what it reads with).

    from lightnode.drivers.c37118 import client
    pmu = client.connect("192.0.2.10", 4712, idcode=7)
    cfg = pmu.config()                  # CFG-2
    pmu.start()
    f = pmu.read()                      # one data frame, its own timestamp
    f.time_us(cfg.time_base), f.pmus[0].stat, cfg.pmus[0].freq_hz(f.pmus[0].freq)

Errors: ``errors.C37118Error`` and its subclasses for the protocol, the
link's ``LinkTimeout`` / ``LinkClosed`` / ``LinkError`` for the link.
"""
