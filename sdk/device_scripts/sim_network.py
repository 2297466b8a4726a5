# A stand-in for MicroPython's ``network`` on the unix port, where the host
# network carries the traffic: interfaces come up at once and say so.
#     import sim_network; sim_network.install()
import sys

STA_IF = 0
AP_IF = 1
STAT_GOT_IP = 3


def install():
    """Make ``import network`` give this module."""
    sys.modules["network"] = sys.modules[__name__]


class _Interface:
    def __init__(self, *args, **kw):
        self._active = False
        self._up = False

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        return None

    def isconnected(self):
        return self._active and self._up

    def status(self, *args):
        return STAT_GOT_IP if self.isconnected() else 0

    def ifconfig(self, *args):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args, **kw):
        return None


class WLAN(_Interface):
    def connect(self, ssid=None, key=None, **kw):
        self._active = True
        self._up = True

    def disconnect(self):
        self._up = False


class WIZNET5K(_Interface):
    """The W5500 on SPI, as rp2 builds with WIZNET5K name it: link is up once active."""

    def __init__(self, spi=None, cs=None, rst=None, *args, **kw):
        super().__init__()
        self._up = True


class LAN(WIZNET5K):
    """The W5500 as the esp32 port names it (``network.LAN(phy_type=...)``)."""
