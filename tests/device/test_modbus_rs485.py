# RS-485 transceiver control with recording stand-ins for machine.UART and
# machine.Pin (no real bus exists on the host): DE high, write, wait until
# the UART has sent the last bit, DE low; our own echo read back and dropped.
from lightnode.drivers.link import LinkError, LinkTimeout
from lightnode.drivers.modbus import master, pdu, rs485, rtu

PORTS = ("unix",)


class Pin:
    def __init__(self, log):
        self.log = log

    def value(self, v):
        self.log.append(("de", v))


class Uart:
    """Half-duplex line: what is written comes back as echo; ``slave`` answers requests."""

    def __init__(self, log, slave=None, echo=True, mangle=None, esp32=False):
        self.log = log
        self.rx = bytearray()
        self.slave = slave
        self.echo = echo
        self.mangle = mangle
        self.sending = None
        self.busy = 0
        if esp32:  # esp32 has txdone(), no flush()
            self.txdone = self._txdone
        else:
            self.flush = self._flush

    def write(self, data):
        self.log.append(("write", bytes(data)))
        self.sending = bytes(data)
        self.busy = 2
        return len(data)

    def _sent(self):
        data = self.sending
        self.sending = None
        if self.echo:
            self.rx += self.mangle(data) if self.mangle else data
        if self.slave:
            self.rx += self.slave(data)

    def _flush(self):
        self.log.append(("flush",))
        self._sent()

    def _txdone(self):
        self.busy -= 1
        done = self.busy <= 0
        self.log.append(("txdone", done))
        if done and self.sending is not None:
            self._sent()
        return done

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n


def _meter(frame):
    unit, body = frame[0], frame[1:-2]
    req = pdu.decode_request(body)
    if req[0] == 3:
        return rtu.encode(unit, pdu.encode_response(3, list(range(req[1], req[1] + req[2]))))
    return rtu.encode(unit, pdu.encode_response(req[0], (req[1], req[2])))


def test_de_pin_drops_after_last_bit():
    for esp32 in (False, True):
        log = []
        line = rs485.Rs485Link(Uart(log, esp32=esp32), Pin(log), echo=True, timeout_ms=50)
        frame = rtu.encode(1, pdu.encode_request(3, 0, 2))
        line.send(frame)
        steps = [e[0] for e in log]
        assert log[0] == ("de", 0) and log[1] == ("de", 1) and log[2] == ("write", frame)
        assert log[-1] == ("de", 0)
        if esp32:
            assert log[-2] == ("txdone", True) and ("txdone", False) in log
        else:
            assert steps[-2] == "flush"
        # the echo was read back and is gone: nothing left for the framer
        try:
            line.recv(timeout_ms=5)
            raise AssertionError("echo was not dropped")
        except LinkTimeout:
            pass


def test_master_over_rs485_sees_only_the_answer():
    log = []
    line = rs485.Rs485Link(Uart(log, slave=_meter), Pin(log), echo=True, timeout_ms=50)
    m = master.Master(line, master.RTU, timeout_ms=100, retries=0, baud=115200)
    assert m.read_holding(1, 10, 3) == [10, 11, 12]
    assert m.write_register(1, 5, 7) == (5, 7)
    assert [e for e in log if e[0] == "de"] == [("de", 0), ("de", 1), ("de", 0), ("de", 1), ("de", 0)]


def test_echo_that_differs_is_a_collision():
    log = []
    line = rs485.Rs485Link(Uart(log, mangle=lambda d: d[:-1] + b"\x00"), Pin(log), timeout_ms=50)
    try:
        line.send(rtu.encode(1, pdu.encode_request(3, 0, 2)))
        raise AssertionError("collision not seen")
    except LinkError as e:
        assert "collision" in str(e)
    assert log[-1] == ("de", 0)


def test_missing_echo_and_no_echo_mode():
    log = []
    line = rs485.Rs485Link(Uart(log, echo=False), Pin(log), timeout_ms=50, baud=115200)
    try:
        line.send(b"\x01\x02")
        raise AssertionError("missing echo not seen")
    except LinkError as e:
        assert "echo missing" in str(e)
    line = rs485.Rs485Link(Uart(log, echo=False, slave=_meter), Pin(log), echo=False, timeout_ms=50)
    m = master.Master(line, master.RTU, timeout_ms=100, retries=0, baud=115200)
    assert m.read_holding(1, 0, 1) == [0]
