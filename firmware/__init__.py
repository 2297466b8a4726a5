# The device application. On a board its modules sit at the filesystem
# root; on the desktop the SDK reaches them as lightnode.firmware.
