"""A flash block device for the unix board and for tests: a file or RAM.

It speaks MicroPython's extended block protocol, as ``vfs.VfsLfs2`` wants
it: ``readblocks(n, buf, off)``, ``writeblocks(n, buf, off)`` and
``ioctl(op, arg)`` (4 block count, 5 block size, 6 erase). It counts
erases per block (wear) and can be told to lose power: ``cut_after(n)``
lets n write or erase steps through, then the next one raises and every
later call (reads too) is refused, as a board that has gone dark.

    from ln import blockdev
    import vfs
    dev = blockdev.BlockDevice(4096, 32)            # RAM; path=... for a file
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), "/flash")
"""

_IOCTL_INIT = 1
_IOCTL_DEINIT = 2
_IOCTL_SYNC = 3
_IOCTL_BLOCK_COUNT = 4
_IOCTL_BLOCK_SIZE = 5
_IOCTL_BLOCK_ERASE = 6
_ERASED = 0xFF
_EIO = 5


class PowerCut(OSError):
    """The simulated power cut: this step, and everything after it, failed."""

    def __init__(self):
        super().__init__(_EIO)


class BlockDevice:
    def __init__(self, block_size, block_count, path=None, data=None):
        """RAM of ``block_count`` blocks (or ``data``, a bytearray kept as is), or the file ``path``."""
        if block_size <= 0 or block_count <= 0:
            raise ValueError("block size and count must be positive")
        self.block_size = block_size
        self.block_count = block_count
        self.erases = bytearray(block_count)  # per block, saturating at 255
        self.steps = 0  # write and erase steps so far
        self._cut_at = -1
        self.dead = False
        self._file = None
        self._ram = None
        size = block_size * block_count
        if path is not None:
            try:
                f = open(path, "r+b")
            except OSError:
                f = open(path, "w+b")
            f.seek(0, 2)
            have = f.tell()
            if have < size:
                blank = b"\xff" * block_size
                while have < size:
                    f.write(blank[: min(block_size, size - have)])
                    have += min(block_size, size - have)
                f.flush()
            self._file = f
        elif data is not None:
            if len(data) != size:
                raise ValueError("data of %d bytes for %d" % (len(data), size))
            self._ram = data
        else:
            self._ram = bytearray(b"\xff") * size
        self._torn = 0  # bytes of the cut step that still reach the flash
        self._blank = b"\xff" * 256

    def cut_after(self, n_steps, torn=0):
        """Lose power after ``n_steps`` more write/erase steps; ``torn`` bytes of the next one land first."""
        self._cut_at = self.steps + n_steps
        self._torn = torn

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def _check(self):
        if self.dead:
            raise PowerCut()

    def _step(self):
        """True while power holds for one more write or erase step."""
        self._check()
        if self.steps == self._cut_at:
            self.dead = True
            return False
        self.steps += 1
        return True

    def _put(self, addr, buf):
        if self._ram is not None:
            self._ram[addr : addr + len(buf)] = buf
        else:
            self._file.seek(addr)
            self._file.write(buf)

    def readblocks(self, n, buf, off=0):
        self._check()
        addr = n * self.block_size + off
        if addr + len(buf) > self.block_size * self.block_count:
            raise OSError(_EIO)
        if self._ram is not None:
            buf[:] = memoryview(self._ram)[addr : addr + len(buf)]
        else:
            self._file.seek(addr)
            self._file.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        if off is None:  # the simple protocol: erase, then write whole blocks
            off = 0
            for i in range(len(buf) // self.block_size):
                self.ioctl(_IOCTL_BLOCK_ERASE, n + i)
        addr = n * self.block_size + off
        if addr + len(buf) > self.block_size * self.block_count:
            raise OSError(_EIO)
        if not self._step():
            if self._torn:
                self._put(addr, memoryview(buf)[: min(self._torn, len(buf))])
            raise PowerCut()
        self._put(addr, buf)

    def ioctl(self, op, arg):
        if op == _IOCTL_BLOCK_COUNT:
            return self.block_count
        if op == _IOCTL_BLOCK_SIZE:
            return self.block_size
        if op == _IOCTL_BLOCK_ERASE:
            if not 0 <= arg < self.block_count:
                return -22
            cut = not self._step()
            size = self.block_size
            if cut:  # a cut erase leaves part of the block erased
                size = min(self._torn, size)
            if self.erases[arg] < 255:
                self.erases[arg] += 1
            blank = self._blank
            addr = arg * self.block_size
            done = 0
            while done < size:
                k = min(256, size - done)
                self._put(addr + done, blank[:k])
                done += k
            if cut:
                raise PowerCut()
            return 0
        if op in (_IOCTL_INIT, _IOCTL_DEINIT, _IOCTL_SYNC):
            self._check()
            if op == _IOCTL_SYNC and self._file is not None:
                self._file.flush()
            return 0
        return None
