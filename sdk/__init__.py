"""lightnode: the desktop SDK of the lightnode light nodes.

Decode and verify what light nodes sign, sign like one (for simulated
fleets), and drive the device code inside MicroPython.

    >>> from lightnode import wire
    >>> tx = wire.decode(data)            # raises lightnode.errors.WireError
    >>> tx.verify(public_key)
"""

from lightnode.firmware.ln import VERSION as __version__  # one release number for device and SDK

__all__ = ["__version__"]
