"""Field protocols, sans-IO: they take and return bytes, never touch a port.

Runs on MicroPython and CPython alike; the firmware build copies this
folder into the device image as ``lightnode/drivers``.
"""
