"""The MMS client: a sans-IO state machine, and a blocking helper over a TCP link.

``Connection`` takes bytes and returns events; it never touches a socket:

    c = Connection(max_pdu=4096)
    send(c.start())                         # COTP CR
    c.receive(data)                         # whatever arrived
    ev = c.next_event()                     # None: needs more bytes
    send(c.data_to_send())                  # the association, once CC came

``MmsClient`` runs it over ``lightnode.drivers.link.TcpLink``, each wait
bounded by the timeout:

    m = MmsClient("127.0.0.1", 102)
    m.associate()
    m.logical_devices()                     # ['RELAYMEAS', 'RELAYPROT']
    m.read("RELAYMEAS/MMXU1.Hz.mag.f", "MX")
    m.enable_report("RELAYPROT/LLN0.BR.brcbEV01")
    rpt = m.wait_report(2000)               # mms.Report, or None
    m.close()                               # MMS Conclude, then the link
"""

from . import iso, mms
from .errors import (
    LocalProtocolError,
    MmsLinkError,
    MmsTimeout,
    RemoteProtocolError,
    ServiceError,
)

# States
IDLE = 0
TRANSPORT = 1    # CR sent, waiting for CC
ASSOCIATING = 2  # AARQ + initiate sent
READY = 3
CONCLUDING = 4
CLOSED = 5


class Associated:
    """The association is up; ``params`` are the negotiated MMS parameters."""

    def __init__(self, params):
        self.params = params


class Response:
    """A confirmed response: ``service`` is mms.SVC_*, ``result`` its parsed body."""

    def __init__(self, invoke_id, service, result):
        self.invoke_id = invoke_id
        self.service = service
        self.result = result


class Failure:
    """The server refused request ``invoke_id`` (confirmed-error or reject)."""

    def __init__(self, invoke_id, message, code=None):
        self.invoke_id = invoke_id
        self.message = message
        self.code = code


class Concluded:
    """The server accepted the Conclude; the association is over."""


class Connection:
    """The sans-IO MMS client (see the module's docstring).

    ``max_pdu`` is the MMS PDU size proposed in the Initiate (the server
    may lower it); every receive buffer is allocated here, once.
    """

    def __init__(self, max_pdu=4096, max_outstanding=5):
        if not 512 <= max_pdu <= 65000:
            raise ValueError("max_pdu must be 512..65000")
        self.max_pdu = max_pdu
        self.framer = iso.Framer(max_pdu + 256)
        self.state = IDLE
        self.params = None
        self.max_outstanding = max_outstanding
        self._out = []
        self._invoke = 0
        self.pending = {}
        self.last_seq = {}
        self.gaps = 0

    # -- sending ---------------------------------------------------------
    def start(self):
        """The COTP connection request that opens the transport."""
        if self.state != IDLE:
            raise LocalProtocolError("start() twice")
        self.state = TRANSPORT
        return iso.connect_request()

    def data_to_send(self):
        """Bytes queued by the state machine (the association after CC)."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out = []
        return out

    def _request(self, service, pdu_of):
        if self.state != READY:
            raise LocalProtocolError("no association (state %d)" % self.state)
        if len(self.pending) >= max(1, self.params["outstanding"]):
            raise LocalProtocolError("%d requests outstanding" % len(self.pending))
        self._invoke = (self._invoke + 1) & 0x7FFFFFFF
        iid = self._invoke
        pdu = pdu_of(iid)
        if len(pdu) > self.params["max_pdu"]:
            raise LocalProtocolError("request of %d bytes exceeds the PDU size %d" % (len(pdu), self.params["max_pdu"]))
        self.pending[iid] = service
        return iid, iso.mms_data(pdu)

    def name_list(self, object_class, domain=None, continue_after=None):
        """(invoke_id, bytes) of a GetNameList request."""
        return self._request(mms.SVC_GET_NAME_LIST, lambda i: mms.get_name_list_request(
            i, object_class, domain, continue_after))

    def read(self, domain, item):
        """(invoke_id, bytes) of a Read of one named variable."""
        return self._request(mms.SVC_READ, lambda i: mms.read_request(i, domain, item))

    def write(self, domain, item, data):
        """(invoke_id, bytes) of a Write of one named variable (``data``: mms.enc_*)."""
        return self._request(mms.SVC_WRITE, lambda i: mms.write_request(i, domain, item, data))

    def conclude(self):
        if self.state != READY:
            raise LocalProtocolError("no association to conclude")
        self.state = CONCLUDING
        return iso.mms_data(mms.CONCLUDE_REQUEST)

    def forget_sequence(self, rpt_id=None):
        """Start sequence checking afresh (after a report control block is re-enabled)."""
        if rpt_id is None:
            self.last_seq = {}
        elif rpt_id in self.last_seq:
            del self.last_seq[rpt_id]

    # -- receiving -------------------------------------------------------
    def receive(self, data):
        self.framer.feed(data)

    def receive_buffer(self, most=512):
        """Where the next bytes go (a memoryview into the receive buffer); then ``received(n)``.

        ``receive`` without a copy: a link reads straight into it with ``recv_into``.
        """
        return self.framer.window(most)

    def received(self, n):
        """``n`` bytes were read into the last ``receive_buffer``."""
        self.framer.wrote(n)

    def space(self):
        """How many bytes ``receive`` can take now."""
        return self.framer.size - self.framer.pending()

    def next_event(self):
        """The next event, or None when more bytes are needed."""
        while True:
            got = self.framer.next_tpdu()
            if got is None:
                return None
            code, buf, s, e = got
            if code == iso.DR or code == iso.ER:
                self.state = CLOSED
                raise RemoteProtocolError("COTP: peer %s the transport" % (
                    "disconnected" if code == iso.DR else "rejected"))
            if self.state == TRANSPORT:
                if code != iso.CC:
                    raise RemoteProtocolError("COTP: TPDU 0x%02x, expected CC" % code)
                self.state = ASSOCIATING
                self._out.append(iso.associate_request(mms.initiate_request(self.max_pdu)))
                continue
            if code != iso.DT:
                raise RemoteProtocolError("COTP: TPDU 0x%02x in a connection" % code)
            if self.state == ASSOCIATING:
                s, e = iso.parse_accept(buf, s, e)
                kind, _, s, e = mms.parse_pdu(buf, s, e)
                if kind == mms.INITIATE_ERROR:
                    raise RemoteProtocolError("MMS: the server refused the Initiate")
                if kind != mms.INITIATE_RESPONSE:
                    raise RemoteProtocolError("MMS: expected an Initiate response")
                p = mms.parse_initiate_response(buf, s, e)
                if p["max_pdu"] > self.max_pdu:
                    # we proposed the ceiling; a larger answer would overrun our buffers
                    raise RemoteProtocolError("MMS: server raised the PDU size to %d" % p["max_pdu"])
                self.params = p
                self.state = READY
                return Associated(p)
            if self.state not in (READY, CONCLUDING):
                raise RemoteProtocolError("data in state %d" % self.state)
            s, e = iso.parse_data(buf, s, e)
            ev = self._mms(buf, s, e)
            if ev is not None:
                return ev

    def _mms(self, buf, s, e):
        kind, iid, s, e = mms.parse_pdu(buf, s, e)
        if kind == mms.UNCONFIRMED:
            name, vals = mms.parse_information_report(buf, s, e)
            if name != "RPT":
                return None  # an InformationReport that is not an IEC 61850 report
            r = mms.decode_report(vals)
            self._check_sequence(r)
            return r
        if kind == mms.CONCLUDE_RESPONSE:
            if self.state != CONCLUDING:
                raise RemoteProtocolError("MMS: Conclude response without a request")
            self.state = CLOSED
            return Concluded()
        if kind == mms.CONCLUDE_ERROR:
            self.state = READY
            return Failure(None, "the server refused to conclude")
        if kind in (mms.CONFIRMED_RESPONSE, mms.CONFIRMED_ERROR, mms.REJECT):
            if iid is None or iid not in self.pending:
                raise RemoteProtocolError("MMS: answer to unknown invoke id %s" % iid)
            service = self.pending.pop(iid)
            if kind == mms.REJECT:
                return Failure(iid, "the server rejected the request")
            if kind == mms.CONFIRMED_ERROR:
                cls, code = mms.service_error(buf, s, e)
                return Failure(iid, "service error class %d code %d" % (cls, code), code)
            if buf[s] != service:
                raise RemoteProtocolError("MMS: response of service 0x%x to 0x%x" % (buf[s], service))
            if service == mms.SVC_READ:
                result = mms.parse_read(buf, s, e)
            elif service == mms.SVC_WRITE:
                result = mms.parse_write(buf, s, e)
            else:
                result = mms.parse_name_list(buf, s, e)
            return Response(iid, service, result)
        raise RemoteProtocolError("MMS: unexpected PDU kind %d" % kind)

    def _check_sequence(self, r):
        if r.seq_num is None or (r.sub_seq_num is not None and r.sub_seq_num != 0):
            return
        last = self.last_seq.get(r.rpt_id)
        self.last_seq[r.rpt_id] = r.seq_num
        if last is None or r.seq_num == last + 1:
            return
        if r.seq_num == 0 and (last == 255 or last == 65535):
            return  # wrapped: INT8U for unbuffered, INT16U for buffered blocks
        mod = 256 if last < 256 and r.seq_num < 256 else 65536
        r.gap = (r.seq_num - last - 1) % mod
        if r.gap:
            self.gaps += 1


# ------------------------------------------------------------ object references

def split_ref(ref, fc):
    """("LD", "LN$FC$DO$DA") from an object reference "LD/LN.DO.DA" and its FC."""
    slash = ref.find("/")
    if slash <= 0 or slash == len(ref) - 1:
        raise ValueError("object reference %r has no LD/" % ref)
    parts = ref[slash + 1:].split(".")
    if not fc or len(fc) != 2:
        raise ValueError("functional constraint %r" % fc)
    return ref[:slash], "$".join([parts[0], fc.upper()] + parts[1:])


def split_rcb(rcb):
    """("LD", "LLN0$BR$name", buffered) from "LD/LLN0.BR.name" (or .RP.)."""
    slash = rcb.find("/")
    parts = rcb[slash + 1:].split(".")
    if slash <= 0 or len(parts) != 3 or parts[1] not in ("BR", "RP"):
        raise ValueError("report control block %r is not LD/LN.BR.name or LD/LN.RP.name" % rcb)
    return rcb[:slash], "$".join(parts), parts[1] == "BR"


# Trigger options (bits of TrgOps) and optional fields we ask reports to carry
TRG_DCHG = 1
TRG_QCHG = 2
TRG_DUPD = 3
TRG_INTEGRITY = 4
TRG_GI = 5
TRG_DEFAULT = (1 << TRG_DCHG) | (1 << TRG_QCHG) | (1 << TRG_INTEGRITY) | (1 << TRG_GI)
OPT_DEFAULT = ((1 << mms.OPT_SEQ_NUM) | (1 << mms.OPT_TIME_OF_ENTRY) | (1 << mms.OPT_REASON)
               | (1 << mms.OPT_DATA_SET) | (1 << mms.OPT_ENTRY_ID) | (1 << mms.OPT_CONF_REV))


class MmsClient:
    """A blocking MMS client over ``TcpLink`` (or any link with send/recv_into/close).

    Every wait is bounded by ``timeout_ms``; link failures come out as
    ``MmsLinkError`` (``MmsTimeout`` for silence), the server's refusals
    as ``ServiceError``, malformed bytes as ``RemoteProtocolError``.
    Reports that arrive while a request waits are kept (at most
    ``max_reports``; ``reports_dropped`` counts the rest).
    """

    def __init__(self, host=None, port=102, timeout_ms=3000, max_pdu=4096, link=None, max_reports=16):
        from lightnode.drivers import link as _link
        from lightnode.drivers import ticks

        self._linkmod = _link
        self._ticks = ticks
        self.timeout_ms = timeout_ms
        if link is None:
            try:
                link = _link.TcpLink(host, port, timeout_ms=timeout_ms)
            except _link.LinkError as e:
                raise MmsLinkError(str(e))
        self.link = link
        self.conn = Connection(max_pdu)
        self.reports = []
        self.max_reports = max_reports
        self.reports_dropped = 0

    # -- plumbing --------------------------------------------------------
    def _send(self, data):
        try:
            self.link.send(data)
        except self._linkmod.LinkError as e:
            raise MmsLinkError(str(e))

    def _event(self, deadline_us):
        """The next event, reading until ``deadline_us``; MmsTimeout after it."""
        conn = self.conn
        ticks = self._ticks
        while True:
            ev = conn.next_event()
            out = conn.data_to_send()
            if out:
                self._send(out)
            if ev is not None:
                return ev
            left = ticks.ticks_diff(deadline_us, ticks.ticks_us()) // 1000
            if left <= 0:
                raise MmsTimeout("no answer within %d ms" % self.timeout_ms)
            buf = conn.receive_buffer(512)
            try:
                n = self.link.recv_into(buf, left)
            except self._linkmod.LinkTimeout:
                raise MmsTimeout("no answer within %d ms" % self.timeout_ms)
            except self._linkmod.LinkClosed:
                conn.state = CLOSED
                raise MmsLinkError("the server closed the connection")
            except self._linkmod.LinkError as e:
                raise MmsLinkError(str(e))
            conn.received(n)

    def _deadline(self, timeout_ms=None):
        t = self.timeout_ms if timeout_ms is None else timeout_ms
        return self._ticks.ticks_add(self._ticks.ticks_us(), t * 1000)

    def _keep(self, rpt):
        if len(self.reports) >= self.max_reports:
            self.reports.pop(0)
            self.reports_dropped += 1
        self.reports.append(rpt)

    def _call(self, made):
        iid, data = made
        self._send(data)
        deadline = self._deadline()
        while True:
            ev = self._event(deadline)
            if isinstance(ev, mms.Report):
                self._keep(ev)
            elif isinstance(ev, (Response, Failure)) and ev.invoke_id == iid:
                if isinstance(ev, Failure):
                    raise ServiceError(ev.message, ev.code)
                return ev.result

    # -- association -----------------------------------------------------
    def associate(self):
        """Transport, session, presentation, ACSE and MMS Initiate; the negotiated parameters."""
        self._send(self.conn.start())
        deadline = self._deadline()
        while True:
            ev = self._event(deadline)
            if isinstance(ev, Associated):
                return ev.params

    def close(self):
        """MMS Conclude (when associated), then close the link."""
        try:
            if self.conn.state == READY:
                self._send(self.conn.conclude())
                deadline = self._deadline()
                while True:
                    ev = self._event(deadline)
                    if isinstance(ev, Concluded):
                        break
                    if isinstance(ev, Failure) and ev.invoke_id is None:
                        raise ServiceError(ev.message)
        finally:
            self.link.close()

    # -- discovery -------------------------------------------------------
    def name_list(self, object_class, domain=None, keep=None, max_pages=64):
        names = []
        after = None
        for _ in range(max_pages):
            got, more, last = self._call(self.conn.name_list(object_class, domain, after))
            names.extend(got if keep is None else [n for n in got if keep(n)])
            if not more:
                return names
            if last is None or last == after:
                raise RemoteProtocolError("GetNameList: moreFollows without progress")
            after = last
        raise RemoteProtocolError("GetNameList: more than %d pages" % max_pages)

    def logical_devices(self):
        return self.name_list(mms.DOMAIN)

    def logical_nodes(self, ld):
        return self.name_list(mms.NAMED_VARIABLE, ld, keep=lambda n: "$" not in n)

    def variables(self, ld, prefix=None):
        """Named variables of ``ld`` (MMS names, LN$FC$DO...), optionally under ``prefix``."""
        if prefix is None:
            return self.name_list(mms.NAMED_VARIABLE, ld)
        return self.name_list(mms.NAMED_VARIABLE, ld, keep=lambda n: n.startswith(prefix))

    def data_sets(self, ld):
        """References of the data sets of ``ld`` ("LD/LLN0.Name")."""
        return ["%s/%s" % (ld, n.replace("$", ".")) for n in self.name_list(mms.NAMED_VARIABLE_LIST, ld)]

    # -- data ------------------------------------------------------------
    def read(self, ref, fc):
        """The value of ``ref`` (``LD/LN.DO[.DA]``) under functional constraint ``fc``."""
        domain, item = split_ref(ref, fc)
        return self.read_mms(domain, item)

    def read_mms(self, domain, item):
        vals = self._call(self.conn.read(domain, item))
        if len(vals) != 1:
            raise RemoteProtocolError("Read: %d results for one variable" % len(vals))
        v = vals[0]
        if isinstance(v, mms.AccessError):
            raise ServiceError("cannot read %s/%s: access error %d" % (domain, item, v.code), v.code)
        return v

    def write_mms(self, domain, item, data):
        res = self._call(self.conn.write(domain, item, data))
        if len(res) != 1:
            raise RemoteProtocolError("Write: %d results for one variable" % len(res))
        if res[0] is not None:
            raise ServiceError("cannot write %s/%s: access error %d" % (domain, item, res[0].code), res[0].code)

    def write(self, ref, fc, data):
        domain, item = split_ref(ref, fc)
        self.write_mms(domain, item, data)

    # -- reports ---------------------------------------------------------
    def enable_report(self, rcb, integrity_ms=None, trg_ops=TRG_DEFAULT, opt_flds=OPT_DEFAULT, gi=False):
        """Set up and enable a report control block ("LD/LLN0.BR.name" or ".RP.name")."""
        domain, item, buffered = split_rcb(rcb)
        if not buffered:
            # Reserve the block first: some servers refuse any write to an
            # unreserved URCB; those without Resv answer with an access error.
            try:
                self.write_mms(domain, item + "$Resv", mms.enc_bool(True))
            except ServiceError:
                pass
        self.write_mms(domain, item + "$RptEna", mms.enc_bool(False))
        self.write_mms(domain, item + "$OptFlds", mms.enc_bits(opt_flds, 10))
        self.write_mms(domain, item + "$TrgOps", mms.enc_bits(trg_ops, 6))
        if integrity_ms is not None:
            self.write_mms(domain, item + "$IntgPd", mms.enc_unsigned(integrity_ms))
        self.write_mms(domain, item + "$RptEna", mms.enc_bool(True))
        self.conn.forget_sequence()
        if gi:
            self.write_mms(domain, item + "$GI", mms.enc_bool(True))
        return buffered

    def disable_report(self, rcb):
        domain, item, _ = split_rcb(rcb)
        self.write_mms(domain, item + "$RptEna", mms.enc_bool(False))

    def wait_report(self, timeout_ms=None):
        """The next report (kept or arriving within ``timeout_ms``), or None."""
        if self.reports:
            return self.reports.pop(0)
        deadline = self._deadline(timeout_ms)
        while True:
            try:
                ev = self._event(deadline)
            except MmsTimeout:
                return None
            if isinstance(ev, mms.Report):
                return ev

    @property
    def gaps(self):
        """How many reports came after a missed sequence number."""
        return self.conn.gaps
