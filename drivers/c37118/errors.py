"""The C37.118 driver's one error family.

``RemoteProtocolError``: the peer (or the link under it) sent bytes that
break IEEE C37.118.2: bad CRC, impossible sizes, a data frame that does not
fit its configuration. ``LocalProtocolError``: we were about to break it
(a data frame encoded against a configuration it does not fit). A caller's
plain mistake (a wrong argument type or range) is a ``ValueError``.
"""


class C37118Error(Exception):
    """Anything the C37.118 protocol or its peer did wrong."""


class LocalProtocolError(C37118Error):
    """We were about to send something the standard does not allow."""


class RemoteProtocolError(C37118Error):
    """The peer sent something the standard does not allow."""


class CrcError(RemoteProtocolError):
    """A frame's CHK does not match its bytes."""
