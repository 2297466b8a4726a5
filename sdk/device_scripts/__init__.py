# Scripts the SDK runs inside MicroPython (see lightnode.micropython).
