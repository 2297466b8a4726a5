"""A libiec61850 server with a relay's data model, for tests and the simulator.

The model matches ``drivers/maps/relay_mms.json``: logical devices
``SIMMEAS`` (MMXU1: PhV, A, Hz, TotW) and ``SIMPROT`` (XCBR1.Pos,
PTRC1.Tr), data sets ``SIMMEAS/LLN0.Measurements`` and
``SIMPROT/LLN0.Events``, an unbuffered report control block
``SIMMEAS/LLN0.RP.urcbMX01`` and a buffered one ``SIMPROT/LLN0.BR.brcbEV01``.
A thread moves the measurements (with quality and timestamps) while it
runs; ``trip()`` and ``set_breaker()`` change the protection points.

Fed by a grid instead (``source=``, a callable giving the MMXU values by
their names in ``step()``, e.g. ``"Hz.mag"``, ``"PhV.phsA.cVal.mag"``,
and ``breaker_closed``, ``trip``, optionally ``t_ms`` (the device's clock)
and ``questionable``), each step writes what the source says and the
breaker and trip points follow it, each change going out as a buffered
report (``lightnode.simulator.devices`` does this for a relay on the grid).

    from lightnode.simulator.mms_server import MmsServer
    with MmsServer() as srv:            # a free TCP port on 127.0.0.1
        print(srv.port)
        srv.trip()
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

IED = "SIM"
MEAS = IED + "MEAS"
PROT = IED + "PROT"
BRCB = PROT + "/LLN0.BR.brcbEV01"
URCB = MEAS + "/LLN0.RP.urcbMX01"

# Quality: validity good = 0; "questionable" = bits 0-1 = 0b11 in the
# libiec61850 encoding (QUALITY_VALIDITY_QUESTIONABLE = 3).
Q_GOOD = 0
Q_QUESTIONABLE = 3
Q_OLD_DATA = 0x400 >> 0  # libiec61850 QUALITY_DETAIL_OLD_DATA


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


def _iec() -> Any:
    from pyiec61850 import pyiec61850 as iec  # type: ignore[import-untyped]

    return iec


class MmsServer:
    """A running libiec61850 IED with a relay's model (see the module's docstring).

    ``period_s`` is how often the measurements move; ``integrity_ms`` the
    integrity period the report control blocks are created with (reports
    at a steady rate once a client enables them).
    """

    def __init__(self, port: int = 0, period_s: float = 0.05, integrity_ms: int = 200,
                 source: Callable[[], dict[str, Any]] | None = None) -> None:
        self.iec = _iec()
        self.source = source
        self.port = port or free_port()
        self.period_s = period_s
        self.integrity_ms = integrity_ms
        self.updates = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._build()

    # -- model -----------------------------------------------------------
    def _build(self) -> None:
        iec = self.iec
        self.model = iec.IedModel_create(IED)
        meas = iec.LogicalDevice_create("MEAS", self.model)
        prot = iec.LogicalDevice_create("PROT", self.model)
        mn = iec.toModelNode
        lln0_m = iec.LogicalNode_create("LLN0", meas)
        iec.CDC_ENS_create("Mod", mn(lln0_m), 0)
        iec.CDC_ENS_create("Health", mn(lln0_m), 0)
        mmxu = iec.LogicalNode_create("MMXU1", meas)
        iec.CDC_WYE_create("PhV", mn(mmxu), 0)
        iec.CDC_WYE_create("A", mn(mmxu), 0)
        iec.CDC_MV_create("Hz", mn(mmxu), 0, False)
        iec.CDC_MV_create("TotW", mn(mmxu), 0, False)
        lln0_p = iec.LogicalNode_create("LLN0", prot)
        iec.CDC_ENS_create("Mod", mn(lln0_p), 0)
        xcbr = iec.LogicalNode_create("XCBR1", prot)
        iec.CDC_DPC_create("Pos", mn(xcbr), 0, iec.CDC_CTL_MODEL_NONE)
        ptrc = iec.LogicalNode_create("PTRC1", prot)
        iec.CDC_ACT_create("Tr", mn(ptrc), 0)

        ds = iec.DataSet_create("Measurements", lln0_m)
        for member in ("MMXU1$MX$TotW", "MMXU1$MX$Hz", "MMXU1$MX$PhV$phsA"):
            iec.DataSetEntry_create(ds, member, -1, None)
        ev = iec.DataSet_create("Events", lln0_p)
        for member in ("XCBR1$ST$Pos", "PTRC1$ST$Tr"):
            iec.DataSetEntry_create(ev, member, -1, None)

        trg = iec.TRG_OPT_DATA_CHANGED | iec.TRG_OPT_INTEGRITY | iec.TRG_OPT_GI | iec.TRG_OPT_QUALITY_CHANGED
        opts = (iec.RPT_OPT_SEQ_NUM | iec.RPT_OPT_TIME_STAMP | iec.RPT_OPT_DATA_SET
                | iec.RPT_OPT_REASON_FOR_INCLUSION | iec.RPT_OPT_CONF_REV | iec.RPT_OPT_ENTRY_ID)
        iec.ReportControlBlock_create("urcbMX01", lln0_m, "SIMMEAS/LLN0.RP.urcbMX01", False,
                                      "Measurements", 1, trg, opts, 50, self.integrity_ms)
        iec.ReportControlBlock_create("brcbEV01", lln0_p, "SIMPROT/LLN0.BR.brcbEV01", True,
                                      "Events", 1, trg, opts | iec.RPT_OPT_BUFFER_OVERFLOW, 50,
                                      self.integrity_ms)

    def _node(self, ref: str) -> Any:
        node = self.iec.IedModel_getModelNodeByObjectReference(self.model, ref)
        if node is None:
            raise KeyError(ref)
        return self.iec.toDataAttribute(node)

    # -- life ------------------------------------------------------------
    def start(self) -> MmsServer:
        iec = self.iec
        self.server = iec.IedServer_create(self.model)
        iec.IedServer_setLocalIpAddress(self.server, "127.0.0.1")
        iec.IedServer_start(self.server, self.port)
        if not iec.IedServer_isRunning(self.server):
            iec.IedServer_destroy(self.server)
            raise OSError("libiec61850 server did not start on port %d" % self.port)
        n = self._node
        self._f = {k: n(MEAS + "/MMXU1." + k + ".f") for k in (
            "TotW.mag", "Hz.mag", "PhV.phsA.cVal.mag", "PhV.phsB.cVal.mag", "PhV.phsC.cVal.mag",
            "A.phsA.cVal.mag", "A.phsB.cVal.mag", "A.phsC.cVal.mag")}
        self._q = {k: n(MEAS + "/MMXU1." + k + ".q") for k in ("TotW", "Hz", "PhV.phsA", "A.phsA")}
        self._t = {k: n(MEAS + "/MMXU1." + k + ".t") for k in ("TotW", "Hz", "PhV.phsA", "A.phsA")}
        self._pos = (n(PROT + "/XCBR1.Pos.stVal"), n(PROT + "/XCBR1.Pos.q"), n(PROT + "/XCBR1.Pos.t"))
        self._tr = (n(PROT + "/PTRC1.Tr.general"), n(PROT + "/PTRC1.Tr.q"), n(PROT + "/PTRC1.Tr.t"))
        self.set_breaker(True)
        self.trip(False)
        self.tripped = False
        self.step()
        self._thread = threading.Thread(target=self._run, name="mms-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        iec = self.iec
        if getattr(self, "server", None) is not None:
            iec.IedServer_stop(self.server)
            iec.IedServer_destroy(self.server)
            self.server = None
        iec.IedModel_destroy(self.model)

    def __enter__(self) -> MmsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- values ----------------------------------------------------------
    def values(self) -> dict[str, float]:
        """The measurements as last set (for comparing with what a client read)."""
        return dict(self._last)

    def step(self) -> None:
        """Move every measurement once, stamping quality and time."""
        iec = self.iec
        k = self.updates
        now = int(time.time() * 1000)
        if self.source is not None:
            self._step_from_source(now)
            return
        w = 2 * math.pi * k / 100.0
        vals = {
            "TotW.mag": 1.5e6 + 2.0e5 * math.sin(w),
            "Hz.mag": 50.0 + 0.05 * math.sin(w / 3),
            "PhV.phsA.cVal.mag": 6350.0 + 20 * math.sin(w),
            "PhV.phsB.cVal.mag": 6351.0 + 20 * math.sin(w + 2.1),
            "PhV.phsC.cVal.mag": 6349.0 + 20 * math.sin(w + 4.2),
            "A.phsA.cVal.mag": 120.0 + 5 * math.sin(w),
            "A.phsB.cVal.mag": 121.0 + 5 * math.sin(w + 2.1),
            "A.phsC.cVal.mag": 119.0 + 5 * math.sin(w + 4.2),
        }
        # Every tenth step the frequency is flagged questionable (a quality change).
        q = Q_QUESTIONABLE if k % 10 == 5 else Q_GOOD
        with self._lock:
            iec.IedServer_lockDataModel(self.server)
            try:
                for name, v in vals.items():
                    iec.IedServer_updateFloatAttributeValue(self.server, self._f[name], v)
                for name in self._t:
                    iec.IedServer_updateUTCTimeAttributeValue(self.server, self._t[name], now)
                    iec.IedServer_updateQuality(self.server, self._q[name], q if name == "Hz" else Q_GOOD)
            finally:
                iec.IedServer_unlockDataModel(self.server)
            self._last = dict(vals)
            self._last["t_ms"] = now
            self._last["hz_q"] = float(q)
            self.updates += 1

    def _step_from_source(self, now: int) -> None:
        iec = self.iec
        assert self.source is not None
        got = self.source()
        vals = {name: float(got[name]) for name in self._f}
        now = int(got.get("t_ms", now))
        q = Q_QUESTIONABLE if got.get("questionable") else Q_GOOD
        with self._lock:
            iec.IedServer_lockDataModel(self.server)
            try:
                for name, v in vals.items():
                    iec.IedServer_updateFloatAttributeValue(self.server, self._f[name], v)
                for name in self._t:
                    iec.IedServer_updateUTCTimeAttributeValue(self.server, self._t[name], now)
                    iec.IedServer_updateQuality(self.server, self._q[name], q)
            finally:
                iec.IedServer_unlockDataModel(self.server)
            self._last = dict(vals)
            self._last["t_ms"] = now
            self._last["hz_q"] = float(q)
            self.updates += 1
        closed = bool(got.get("breaker_closed", True))
        if closed != self.breaker_closed:
            self.set_breaker(closed)
        tripped = bool(got.get("trip", False))
        if tripped != self.tripped:
            self.trip(tripped)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.step()
            except Exception:  # a stopped server while stepping: end quietly
                return

    def set_breaker(self, closed: bool) -> None:
        """XCBR1.Pos.stVal: on (closed) or off (open); a buffered report goes out."""
        self._set_bits(self._pos, 2 if closed else 1)
        self.breaker_closed = closed

    def trip(self, on: bool = True) -> None:
        """PTRC1.Tr.general: a trip (or its reset); a buffered report goes out."""
        iec = self.iec
        now = int(time.time() * 1000)
        with self._lock:
            iec.IedServer_lockDataModel(self.server)
            try:
                iec.IedServer_updateUTCTimeAttributeValue(self.server, self._tr[2], now)
                iec.IedServer_updateBooleanAttributeValue(self.server, self._tr[0], bool(on))
            finally:
                iec.IedServer_unlockDataModel(self.server)
        self.tripped = bool(on)

    def _set_bits(self, nodes: tuple, dbpos: int) -> None:
        iec = self.iec
        now = int(time.time() * 1000)
        with self._lock:
            iec.IedServer_lockDataModel(self.server)
            try:
                iec.IedServer_updateUTCTimeAttributeValue(self.server, nodes[2], now)
                iec.IedServer_updateDbposValue(self.server, nodes[0], dbpos)
            finally:
                iec.IedServer_unlockDataModel(self.server)


def main() -> None:  # pragma: no cover - a manual run
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 10102
    with MmsServer(port=port) as srv:
        print("libiec61850 relay model on 127.0.0.1:%d (Ctrl-C stops)" % srv.port)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
