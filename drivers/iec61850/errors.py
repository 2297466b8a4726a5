"""The MMS client's one error family."""


class MmsError(Exception):
    """Anything the link, the peer or the protocol did to an MMS exchange."""


class LocalProtocolError(MmsError):
    """We were asked to do what the protocol does not allow (wrong state, too big)."""


class RemoteProtocolError(MmsError):
    """The peer sent bytes that break the protocol (truncated, overlong, malformed)."""


class MmsLinkError(MmsError):
    """The link under MMS failed or closed."""


class MmsTimeout(MmsLinkError):
    """The peer did not answer within the timeout."""


class ServiceError(MmsError):
    """The server refused a request (a confirmed-error or reject PDU, or an access failure)."""

    def __init__(self, msg, code=None):
        MmsError.__init__(self, msg)
        self.code = code
