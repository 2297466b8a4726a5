"""Modbus PDUs (function code and data) for function codes 1-6, 15 and 16, both ways.

A request is the tuple ``(function, address, arg)``: ``arg`` is the
quantity for reads (1-4), the value for single writes (5: bool, 6: int)
and the list of values for multiple writes (15: bools, 16: ints). A
response is what the request returns: a list for reads, ``(address,
value)`` for single writes, ``(address, quantity)`` for multiple writes,
or an ``ExceptionResponse``.

    >>> pdu.encode_request(3, 0x6B, 3)
    b'\\x03\\x00k\\x00\\x03'
    >>> pdu.decode_response(b'\\x03\\x02\\x00\\x2a', (3, 0x6B, 1))
    [42]
"""

import struct

from . import ExceptionResponse, LocalProtocolError, RemoteProtocolError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


READ_COILS = const(1)
READ_DISCRETE_INPUTS = const(2)
READ_HOLDING_REGISTERS = const(3)
READ_INPUT_REGISTERS = const(4)
WRITE_SINGLE_COIL = const(5)
WRITE_SINGLE_REGISTER = const(6)
WRITE_MULTIPLE_COILS = const(15)
WRITE_MULTIPLE_REGISTERS = const(16)

FUNCTIONS = (1, 2, 3, 4, 5, 6, 15, 16)
# Largest PDU (section 4.1): 256-byte RTU ADU less address and CRC.
MAX_PDU = const(253)

# Quantity limits per function (section 6).
_MAX_QUANTITY = {1: 2000, 2: 2000, 3: 125, 4: 125, 15: 1968, 16: 123}
_COIL_ON = const(0xFF00)

# The table each function reads or writes, in the point maps' words.
TABLE_OF = {1: "coil", 2: "discrete", 3: "holding", 4: "input",
            5: "coil", 6: "holding", 15: "coil", 16: "holding"}
READ_FUNCTION = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


def _check_range(function, address, quantity):
    if not 0 <= address <= 0xFFFF:
        raise LocalProtocolError("address %d outside 0-65535" % address)
    limit = _MAX_QUANTITY[function]
    if not 1 <= quantity <= limit:
        raise LocalProtocolError("function %d takes 1-%d items, not %d" % (function, limit, quantity))
    if address + quantity > 0x10000:
        raise LocalProtocolError("address %d + %d items runs past 65535" % (address, quantity))


def pack_bits(bits):
    """Coils to bytes, first coil in the lowest bit of the first byte."""
    out = bytearray((len(bits) + 7) >> 3)
    for i in range(len(bits)):
        if bits[i]:
            out[i >> 3] |= 1 << (i & 7)
    return out


def unpack_bits(data, count, offset=0):
    return [bool(data[offset + (i >> 3)] >> (i & 7) & 1) for i in range(count)]


def encode_request(function, address, arg):
    """The request PDU as bytes; LocalProtocolError when it would break the protocol."""
    if function in (1, 2, 3, 4):
        _check_range(function, address, arg)
        return struct.pack(">BHH", function, address, arg)
    if function == 5:
        _check_range(1, address, 1)
        return struct.pack(">BHH", 5, address, _COIL_ON if arg else 0)
    if function == 6:
        _check_range(3, address, 1)
        if not 0 <= arg <= 0xFFFF:
            raise LocalProtocolError("register value %d outside 0-65535" % arg)
        return struct.pack(">BHH", 6, address, arg)
    if function == 15:
        _check_range(15, address, len(arg))
        bits = pack_bits(arg)
        return struct.pack(">BHHB", 15, address, len(arg), len(bits)) + bits
    if function == 16:
        _check_range(16, address, len(arg))
        for v in arg:
            if not 0 <= v <= 0xFFFF:
                raise LocalProtocolError("register value %d outside 0-65535" % v)
        return struct.pack(">BHHB%dH" % len(arg), 16, address, len(arg), 2 * len(arg), *arg)
    raise LocalProtocolError("function code %d is not supported" % function)


def _need(pdu, n, what):
    if len(pdu) != n:
        raise RemoteProtocolError("%s: %d bytes, expected %d" % (what, len(pdu), n))


def decode_request(pdu):
    """``(function, address, arg)`` from a request PDU; RemoteProtocolError if malformed."""
    if len(pdu) < 1:
        raise RemoteProtocolError("empty PDU")
    function = pdu[0]
    if function in (1, 2, 3, 4, 5, 6):
        _need(pdu, 5, "function %d request" % function)
        address, value = struct.unpack_from(">HH", pdu, 1)
        if function == 5:
            if value not in (0, _COIL_ON):
                raise RemoteProtocolError("coil value 0x%04x is neither 0xFF00 nor 0" % value)
            return (5, address, value == _COIL_ON)
        if function != 6:
            _check_remote(function, address, value)
        return (function, address, value)
    if function in (15, 16):
        if len(pdu) < 6:
            raise RemoteProtocolError("function %d request: %d bytes, too short" % (function, len(pdu)))
        address, quantity, nbytes = struct.unpack_from(">HHB", pdu, 1)
        _check_remote(function, address, quantity)
        want = (quantity + 7) >> 3 if function == 15 else 2 * quantity
        if nbytes != want:
            raise RemoteProtocolError("byte count %d for %d items, expected %d" % (nbytes, quantity, want))
        _need(pdu, 6 + nbytes, "function %d request" % function)
        if function == 15:
            return (15, address, unpack_bits(pdu, quantity, 6))
        return (16, address, list(struct.unpack_from(">%dH" % quantity, pdu, 6)))
    raise RemoteProtocolError("function code %d is not supported" % function)


def _check_remote(function, address, quantity):
    try:
        _check_range(function, address, quantity)
    except LocalProtocolError as e:
        raise RemoteProtocolError(str(e))


def encode_response(function, result):
    """The response PDU for ``result`` (see the module's docstring) to a ``function`` request."""
    if isinstance(result, ExceptionResponse):
        return bytes((function | 0x80, result.code))
    if function in (1, 2):
        bits = pack_bits(result)
        return bytes((function, len(bits))) + bits
    if function in (3, 4):
        return struct.pack(">BB%dH" % len(result), function, 2 * len(result), *result)
    if function == 5:
        return struct.pack(">BHH", 5, result[0], _COIL_ON if result[1] else 0)
    if function in (6, 15, 16):
        return struct.pack(">BHH", function, result[0], result[1])
    raise LocalProtocolError("function code %d is not supported" % function)


def decode_response(pdu, request):
    """The result a response PDU carries for ``request``; RemoteProtocolError if it does not fit."""
    function, address, arg = request
    if len(pdu) < 2:
        raise RemoteProtocolError("response of %d bytes" % len(pdu))
    got = pdu[0]
    if got == function | 0x80:
        _need(pdu, 2, "exception response")
        return ExceptionResponse(function, pdu[1])
    if got != function:
        raise RemoteProtocolError("response to function %d has function %d" % (function, got))
    if function in (1, 2, 3, 4):
        nbytes = pdu[1]
        want = (arg + 7) >> 3 if function < 3 else 2 * arg
        if nbytes != want:
            raise RemoteProtocolError("byte count %d, expected %d for %d items" % (nbytes, want, arg))
        _need(pdu, 2 + nbytes, "function %d response" % function)
        if function < 3:
            return unpack_bits(pdu, arg, 2)
        return list(struct.unpack_from(">%dH" % arg, pdu, 2))
    _need(pdu, 5, "function %d response" % function)
    a, v = struct.unpack_from(">HH", pdu, 1)
    if function == 5:
        want = (address, _COIL_ON if arg else 0)
    elif function == 6:
        want = (address, arg)
    else:
        want = (address, len(arg))
    if (a, v) != want:
        raise RemoteProtocolError("function %d echo (%d, %d), expected (%d, %d)"
                                  % (function, a, v, want[0], want[1]))
    return (a, bool(v) if function == 5 else v)


def response_length(data, n):
    """Bytes in the response PDU starting at ``data[0]``, or 0 if ``n`` bytes do not tell yet."""
    if n < 1:
        return 0
    function = data[0]
    if function & 0x80:
        return 2
    if function in (1, 2, 3, 4):
        return 2 + data[1] if n >= 2 else 0
    if function in (5, 6, 15, 16):
        return 5
    raise RemoteProtocolError("function code %d is not supported" % function)


def request_length(data, n):
    """Bytes in the request PDU starting at ``data[0]``, or 0 if ``n`` bytes do not tell yet."""
    if n < 1:
        return 0
    function = data[0]
    if function in (1, 2, 3, 4, 5, 6):
        return 5
    if function in (15, 16):
        return 6 + data[5] if n >= 6 else 0
    raise RemoteProtocolError("function code %d is not supported" % function)
