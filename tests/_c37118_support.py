"""Helpers of the C37.118 peer tests: a recording link, a pcap of a real byte stream, tshark's view of it."""

from __future__ import annotations

import math
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from _need import missing
from lightnode.drivers.c37118 import frames, stream


def need(tool: str) -> str:
    """The tool's path; skip when it is missing (fail under CI=true, where it is installed)."""
    path = shutil.which(tool) or ("/usr/bin/" + tool if os.path.exists("/usr/bin/" + tool) else None)
    if path:
        return path
    missing("%s is not installed (Debian: apt-get install tshark); CI installs it" % tool)


class RecordingLink:
    """A link that remembers every byte in both directions, in order."""

    def __init__(self, link) -> None:
        self.link = link
        self.events: list[tuple[bool, bytes]] = []  # (from the client, bytes)

    def send(self, data) -> None:
        self.events.append((True, bytes(data)))
        self.link.send(data)

    def recv_into(self, buf, timeout_ms=None) -> int:
        n = self.link.recv_into(buf, timeout_ms)
        self.events.append((False, bytes(buf[:n])))
        return n

    def close(self) -> None:
        self.link.close()


def whole_frames(events: list[tuple[bool, bytes]]) -> list[tuple[bool, bytes]]:
    """The events with the server's stream cut after its last whole frame (the read stopped mid-frame)."""
    s2c = b"".join(d for c, d in events if not c)
    r = stream.FrameReader(65535)
    r.feed(s2c)
    end = 0
    while r.next_frame() is not None:
        end = r.start
    out, seen = [], 0
    for c, d in events:
        if not c:
            keep = d[: max(0, end - seen)]
            seen += len(d)
            if not keep:
                continue
            d = keep
        out.append((c, d))
    return out


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def write_pcap(path: Path, events: list[tuple[bool, bytes]], server_port: int) -> None:
    """A pcap (raw IPv4) of one TCP connection: handshake, then each send/recv as one segment."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    cip, sip = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
    cport = 40000
    seq = {True: 1000, False: 5000}
    clock = [1767225600_000000]

    def pkt(fc: bool, flags: int, payload: bytes = b"") -> None:
        src, dst = (cip, sip) if fc else (sip, cip)
        sp, dp = (cport, server_port) if fc else (server_port, cport)
        ack = seq[not fc] if flags & 0x10 else 0
        tcp = struct.pack("!HHIIBBHHH", sp, dp, seq[fc], ack, 5 << 4, flags, 65535, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp + payload)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        data = ip + tcp + payload
        clock[0] += 100
        out.append(struct.pack("<IIII", clock[0] // 1_000_000, clock[0] % 1_000_000, len(data), len(data)) + data)
        seq[fc] = (seq[fc] + len(payload) + (1 if flags & 0x02 else 0)) & 0xFFFFFFFF

    pkt(True, 0x02)
    pkt(False, 0x12)
    pkt(True, 0x10)
    for fc, data in events:
        for i in range(0, len(data), 1400):
            pkt(fc, 0x18, data[i:i + 1400])
    path.write_bytes(b"".join(out))


def tshark_pdus(pcap: Path, port: int) -> tuple[list[dict], list[str]]:
    """Each C37.118 PDU tshark dissected (fields by name, in order), and the other protocols it named."""
    exe = need("tshark")
    proc = subprocess.run([exe, "-r", str(pcap), "-d", "tcp.port==%d,synphasor" % port, "-T", "pdml"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    root = ET.fromstring(proc.stdout)
    pdus, others = [], []
    for pk in root.iter("packet"):
        for pr in pk.findall("proto"):
            name = pr.get("name")
            if name == "synphasor":
                fields: dict[str, list] = {}
                for f in pr.iter("field"):
                    key = f.get("name") or f.get("show") or ""
                    fields.setdefault(key, []).append(f)
                pdus.append(fields)
            # "fake-field-wrapper" holds fields of no protocol (tshark adds it when a
            # frame was reassembled from several recorded segments, which depends on
            # how the reads fell); its fields are still checked for marks below.
            elif name not in ("geninfo", "frame", "raw", "ip", "tcp", "fake-field-wrapper"):
                others.append(name or "")
            for f in pr.iter("field"):  # any malformed mark; warnings and errors of any layer
                text = f.get("showname") or ""
                if f.get("name") == "_ws.malformed" or (
                        f.get("name") == "_ws.expert" and ("(Warning/" in text or "(Error/" in text)):
                    others.append(text or f.get("name") or "")
                elif name == "synphasor" and f.get("name") == "_ws.expert":
                    others.append(text)
    return pdus, others


_PHASOR = re.compile(r'",\s*([-\d.]+)[VA]\s*\u2220\s*([-\d.]+)\u00b0')


def check_against_tshark(cfg: frames.Config, wire: bytes, pdu: dict) -> None:
    """One data frame: tshark's fields equal what our decoder reads from the same bytes."""
    f = frames.decode_data(wire, cfg)
    p, d = cfg.pmus[0], f.pmus[0]

    def one(name):
        return pdu[name][0]

    assert one("synphasor.checksum.status").get("show") == "1"
    assert int(one("synphasor.soc").get("value"), 16) == f.soc
    assert int(one("synphasor.fracsec_raw").get("show")) == f.fracsec & 0xFFFFFF
    assert int(one("synphasor.timeqal.timequalindic").get("show"), 16) == f.fracsec >> 24 & 0x0F
    assert int(one("Flags").get("value"), 16) == d.stat
    shown = [_PHASOR.search(x.get("showname")) for x in pdu["synphasor.phasor"]]
    assert len(shown) == p.phnmr and all(shown), [x.get("showname") for x in pdu["synphasor.phasor"]]
    for i, m in enumerate(shown):
        mag, ang = p.phasor(i, d.ph[2 * i], d.ph[2 * i + 1])
        assert abs(float(m.group(1)) - mag) <= 0.0006 + abs(mag) * 1e-6, (i, m.group(0), mag)
        diff = (float(m.group(2)) - math.degrees(ang) + 180) % 360 - 180
        assert abs(diff) <= 0.0006, (i, m.group(0), math.degrees(ang))
    if p.fmt & frames.FMT_FREQ_FLOAT:
        assert abs(float(one("synphasor.actual_frequency_value").get("show")) - d.freq) <= 1e-5 * 50
        assert abs(float(one("synphasor.rate_change_frequency").get("show")) - d.dfreq) <= 1e-5 * max(1, abs(d.dfreq))
    else:
        assert int(one("synphasor.frequency_deviation_from_nominal").get("show")) == d.freq
        v = int(one("synphasor.rate_change_frequency").get("value"), 16)
        assert (v - 65536 if v >= 32768 else v) == d.dfreq
    for i, x in enumerate(pdu.get("synphasor.analog_value", [])):
        if p.fmt & frames.FMT_ANALOG_FLOAT:
            shown_an = float(x.get("showname").rsplit(",", 1)[1])
            assert abs(shown_an - d.an[i]) <= 1e-5 * max(1, abs(d.an[i]))
        else:
            v = int(x.get("value"), 16)
            assert (v - 65536 if v >= 32768 else v) == d.an[i]
    assert [int(x.get("show"), 16) for x in pdu.get("synphasor.digital_status_word", [])] == d.dg
