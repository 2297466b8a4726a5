"""Modbus for light nodes: PDU codec, RTU and TCP framing, a polling master, a listen-only tap.

Sans-IO in layers, as pymodbus sorts them: ``pdu`` (function codes) ->
``rtu`` / ``tcp`` (framing) -> ``master`` (requests over a link from
``lightnode.drivers.link``) and ``tap`` (decode someone else's bus);
``registers`` turns registers into numbers, ``rs485`` drives the
transceiver's enable pin on a board.

    from lightnode.drivers import link
    from lightnode.drivers.modbus import master
    m = master.Master(link.TcpLink("10.0.0.7", 502), master.TCP)
    regs = m.read_holding(1, 0, 4)     # [int, ...], or an ExceptionResponse

A device's Modbus exception comes back as a value (``ExceptionResponse``),
never raised: the device answered. What the link or the peer got wrong is
raised as ``RemoteProtocolError`` or ``ModbusTimeout``; a request this side
should not have sent is a ``LocalProtocolError``; both are ``ModbusError``.
"""

# Exception codes (Modbus Application Protocol v1.1b3, section 7).
ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
SERVER_DEVICE_FAILURE = 4
ACKNOWLEDGE = 5
SERVER_DEVICE_BUSY = 6
GATEWAY_PATH_UNAVAILABLE = 10
GATEWAY_TARGET_NO_RESPONSE = 11

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusError(Exception):
    """Anything the link, the peer or the protocol got wrong."""


class LocalProtocolError(ModbusError):
    """A request this side was asked to send breaks the protocol (quantity or address out of range)."""


class RemoteProtocolError(ModbusError):
    """The peer's bytes break the protocol: bad CRC, bad length, wrong function or transaction id."""


class ModbusTimeout(ModbusError):
    """No complete answer within the timeout, after every retry."""


class ModbusLinkError(ModbusError):
    """The link under the master failed (closed, reset, unreachable)."""


class ExceptionResponse:
    """A device's Modbus exception: a value the master returns, as the device meant it."""

    __slots__ = ("function", "code")

    def __init__(self, function, code):
        self.function = function & 0x7F
        self.code = code

    @property
    def name(self):
        return EXCEPTION_NAMES.get(self.code, "exception %d" % self.code)

    def __eq__(self, other):
        return (isinstance(other, ExceptionResponse) and other.function == self.function
                and other.code == self.code)

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return self.function * 256 + self.code

    def __repr__(self):
        return "ExceptionResponse(function=%d, code=%d: %s)" % (self.function, self.code, self.name)


def is_exception(result):
    return isinstance(result, ExceptionResponse)
