# Runs inside MicroPython with the working directory at a unix-port board's
# root: what the firmware does at every boot before anything else. The
# first boot makes the device key; later boots keep it. Only the identity
# (public key, device id, board, firmware) comes back.
# argv: BOARD FIRMWARE [STANDS_IN_FOR]
import sys

from ln import keystore


def main(board, firmware, stands_in_for=None):
    mp_result({"identity": keystore.boot(board, firmware, stands_in_for=stands_in_for)})  # noqa: F821


main(*sys.argv[1:])
