"""The device's MQTT uplink (ln.mqtt) in the unix port at the Pico W budget, against a Mosquitto of its own.

Each test starts ``mosquitto -c`` on 127.0.0.1 and a free port (no
persistence), runs one MicroPython script (``CLIENT`` below) that publishes
numbered records through ``ln.mqtt.Client`` and reports what it saw. In
the restart and outage tests the client subscribes to its own tx topic:
the SUBSCRIBE goes ahead of the republished window on every new link, so
the echo is a subscriber that never misses a message for want of being
subscribed, and it shows the subscriptions are renewed. Skips where
mosquitto or the unix port is missing; fails there under CI=true.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import paho.mqtt.client as paho
import pytest
from _need import missing, need
from lightnode import broker
from lightnode import micropython as mp

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DEVICE = "a1a1a1a1a1a1a1a1"
TOPIC = "ln/feeder-1/%s/tx" % DEVICE

CLIENT = r"""
import asyncio, gc, json, sys
from ln import mqtt

cfg = json.load(open(sys.argv[1]))


def mark(name):
    open(cfg["dir"] + "/" + name, "w").close()


async def main():
    gc.collect()
    base = gc.mem_alloc()  # the ROM image and the interpreter, before the client exists
    got = {}
    seen = [0]

    def on_echo(topic, payload):
        i = int(payload[:8])
        seen[0] += 1
        got[i] = got.get(i, 0) + 1

    ctx = None
    if cfg.get("ca"):
        with open(cfg["ca"], "rb") as f:
            ctx = mqtt.tls_context(f.read())
    c = mqtt.Client("127.0.0.1", cfg["port"], cfg["id"], user=cfg.get("user"),
                    password=cfg.get("password"), keepalive=cfg.get("keepalive", 10), ssl=ctx,
                    server_hostname=cfg.get("hostname"), window=cfg.get("window", 8),
                    backoff_ms=(100, 800), timeout_ms=cfg.get("timeout_ms", 2000))
    if cfg.get("echo"):
        c.subscribe(cfg["topic"], on_echo)
    task = asyncio.create_task(c.run())
    if not await c.wait_connected(cfg.get("connect_ms", 5000)):
        await c.close()
        mp_result({"connected": False, "status": c.status(), "errors": c.errors})
        return
    n = cfg["n"]
    pad = b"." * cfg.get("pad", 32)
    heap = []
    states = []
    blocked = 0
    t_start = asyncio.ticks()
    for i in range(n):
        if i == cfg.get("mark_at", -1):
            mark("mark")
        every = cfg.get("heap_every")
        if every and i % every == 0:
            await c.drain(5000)  # the same state at every sample: nothing in flight
            gc.collect()
            heap.append(gc.mem_alloc())
        if c.in_flight >= c.window:
            blocked += 1
        await c.publish(cfg["topic"], ("%08d" % i).encode() + pad, key=i)
        if cfg.get("pace_ms"):
            await asyncio.sleep_ms(cfg["pace_ms"])
    drained = await c.drain(cfg.get("drain_ms", 20000))
    if cfg.get("heap_every"):
        gc.collect()
        heap.append(gc.mem_alloc())
    waited = 0
    while cfg.get("echo") and len(got) < n and waited < 10000:
        await asyncio.sleep_ms(50)
        waited += 50
    ms = asyncio.ticks_diff(asyncio.ticks(), t_start)
    await c.close()
    await task
    mp_result({"connected": True, "drained": drained, "status": c.status(), "sent": c.sent,
               "resent": c.resent, "acked": c.acked, "sessions": c.sessions, "blocked": blocked,
               "missing": [i for i in range(n) if i not in got] if cfg.get("echo") else None,
               "dups": seen[0] - len(got), "heap": heap, "base": base, "ms": ms, "errors": c.errors})


asyncio.run(main())
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Mosquitto on one loopback port that a test may kill, stop and start again."""

    def __init__(self, tmp, extra=""):
        if not os.path.exists(MOSQUITTO):
            missing("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.port = _free_port()
        self.conf = tmp / ("mosquitto-%d.conf" % self.port)
        self.conf.write_text("listener %d 127.0.0.1\npersistence false\nlog_dest stderr\n"
                             "log_type error\n%s" % (self.port, extra))
        if os.geteuid() == 0:  # else mosquitto drops to its own user, who cannot read tmp_path
            self.conf.write_text(self.conf.read_text() + "user root\n")
        if "allow_anonymous" not in extra:
            self.conf.write_text(self.conf.read_text() + "allow_anonymous true\n")
        self.log = tmp / ("mosquitto-%d.log" % self.port)
        self.proc = None
        self.start()

    def start(self):
        deadline = time.monotonic() + 10
        while True:  # after a kill the port may take a moment to be free again
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log,
                                             stderr=subprocess.STDOUT)
            while self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("mosquitto did not listen: %s" % self.log.read_text())
                    time.sleep(0.03)
            if time.monotonic() > deadline:
                pytest.fail("mosquitto exited: %s" % self.log.read_text())
            time.sleep(0.2)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def pause(self, seconds):
        self.proc.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.proc.send_signal(signal.SIGCONT)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def tmp_broker(tmp_path):
    made = []

    def make(extra=""):
        b = Broker(tmp_path, extra)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def _run(tmp_path, timeout=60, **cfg):
    need(mp.find_micropython, mp.find_mpy_cross)
    cfg.setdefault("id", DEVICE)
    cfg.setdefault("topic", TOPIC)
    cfg["dir"] = str(tmp_path)
    path = tmp_path / ("client-%d.json" % time.monotonic_ns())
    path.write_text(json.dumps(cfg))
    run = mp.run_unix(code=CLIENT, board="pico_w", args=(str(path),), timeout=timeout)
    run.check()
    assert run.results, run.stdout[-2000:] + run.stderr[-2000:]
    return run.results[-1]


def _run_in_thread(tmp_path, **cfg):
    box = {}

    def go():
        try:
            box["result"] = _run(tmp_path, **cfg)
        except BaseException as e:  # raised again in the test's thread
            box["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, box


def _wait_file(path, thread, timeout=30):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert thread.is_alive(), "the client ended before reaching the mark"
        assert time.monotonic() < deadline, "the client never reached the mark"
        time.sleep(0.01)


def _join(thread, box, timeout=60):
    thread.join(timeout)
    assert not thread.is_alive(), "the client did not finish"
    if "error" in box:
        raise box["error"]
    return box["result"]


def _subscriber(port, topic, got, **tls):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="sub-%d" % port)
    subscribed = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda cl, u, m: got.append(bytes(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert subscribed.wait(5), "the test's subscriber could not subscribe"
    return c


WINDOW = r"""
import asyncio
from ln import mqtt

rejected = []
c = mqtt.Client("127.0.0.1", 9, "d", window=3, on_reject=lambda k, r: rejected.append([k, r]))


async def main():
    for i in range(3):
        await c.publish("ln/f/d/tx", b"r%d" % i, key=i)
    late = asyncio.create_task(c.publish("ln/f/d/tx", b"r3", key=3))
    await asyncio.sleep_ms(50)
    waiting = not late.done()  # the window is full and there is no link: publish waits
    held = c.reject(1, "bad-signature")  # a NACK: out of the window, never sent again
    await asyncio.sleep_ms(50)
    mp_result({"waiting": waiting, "held": held, "after": late.done(), "rejected": rejected,
               "keys": [it[3] for it in c._win], "pids": [it[0] for it in c._win],
               "again": c.reject(7, "unknown-device"), "status": c.status()})


asyncio.run(main())
"""


def test_window_waits_when_full_and_a_rejected_record_leaves_it(tmp_path):
    need(mp.find_micropython, mp.find_mpy_cross)
    r = mp.run_unix(code=WINDOW, board="pico_w", timeout=30).check().results[-1]
    assert r["waiting"] and r["held"] and r["after"], r
    assert r["keys"] == [0, 2, 3] and len(set(r["pids"])) == 3 and 0 not in r["pids"], r
    assert r["rejected"] == [[1, "bad-signature"], [7, "unknown-device"]] and r["again"] is False
    assert r["status"] == {"state": "down", "connected": False, "reconnects": 0, "in_flight": 3,
                           "last_error": ""}


# -- plain TCP ----------------------------------------------------------------------


def test_qos1_publishes_arrive_in_order_and_subscription_receives(tmp_path, tmp_broker):
    b = tmp_broker()
    got = []
    sub = _subscriber(b.port, TOPIC, got)
    try:
        r = _run(tmp_path, port=b.port, n=200, echo=True)
        deadline = time.monotonic() + 5
        while len(got) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert r["connected"] and r["drained"] and r["missing"] == [], r
    assert [int(p[:8]) for p in got] == list(range(200))  # the outside subscriber, in order
    assert r["acked"] == 200 and r["resent"] == 0 and r["status"]["reconnects"] == 0


def test_wrong_password_is_refused_with_the_reason(tmp_path, tmp_broker):
    passwd = tmp_path / "passwd"
    passwd.write_text("%s:%s\n" % (DEVICE, broker.hash_password("right")))
    b = tmp_broker("allow_anonymous false\npassword_file %s\n" % passwd)
    r = _run(tmp_path, port=b.port, n=1, user=DEVICE, password="wrong", connect_ms=1500)
    assert not r["connected"]
    err = r["status"]["last_error"]
    assert "broker refused CONNECT" in err and ("not authorised" in err or "bad user name" in err), err
    ok = _run(tmp_path, port=b.port, n=3, user=DEVICE, password="right")
    assert ok["connected"] and ok["drained"] and ok["acked"] == 3


def test_broker_killed_and_restarted_nothing_lost(tmp_path, tmp_broker):
    b = tmp_broker()
    n = 300
    t, box = _run_in_thread(tmp_path, port=b.port, n=n, echo=True, pace_ms=5, mark_at=100,
                            keepalive=5)
    _wait_file(tmp_path / "mark", t)
    b.kill()  # SIGKILL: no goodbye, and no persistence to come back with
    time.sleep(1.5)
    b.start()  # same port, empty
    r = _join(t, box)
    assert r["missing"] == [], r  # every record reached the subscriber at least once
    assert r["drained"] and r["status"]["reconnects"] >= 1 and r["sessions"] >= 2, r
    assert r["blocked"] > 0, r  # the window filled while the broker was gone
    print("kill/restart: %d reconnects, %d resent with DUP, %d duplicates at the subscriber, "
          "%d ms" % (r["status"]["reconnects"], r["resent"], r["dups"], r["ms"]))


def test_outage_queues_in_the_window_and_delivers_after(tmp_path, tmp_broker):
    b = tmp_broker()
    n = 200
    t, box = _run_in_thread(tmp_path, port=b.port, n=n, echo=True, pace_ms=5, mark_at=60,
                            keepalive=1, timeout_ms=1000)
    _wait_file(tmp_path / "mark", t)
    b.pause(4)  # the broker answers nothing for 4 s: a silent network
    r = _join(t, box)
    assert r["missing"] == [], r
    assert r["drained"] and r["status"]["reconnects"] >= 1 and r["blocked"] > 0, r
    assert r["resent"] > 0, r  # what went into the silence was sent again
    print("outage: %d reconnects, %d resent, %d duplicates, last error %r"
          % (r["status"]["reconnects"], r["resent"], r["dups"], r["status"]["last_error"]))


def test_publish_loop_heap_is_flat_at_the_pico_w_budget(tmp_path, tmp_broker):
    b = tmp_broker()
    r = _run(tmp_path, port=b.port, n=1000, heap_every=100, pad=200)
    assert r["drained"] and r["acked"] == 1000
    heap = r["heap"]
    print("heap (gc.mem_alloc after gc.collect, every 100 publishes, less %d before the client): %s; "
          "%d ms" % (r["base"], [h - r["base"] for h in heap], r["ms"]))
    assert max(heap[1:]) - min(heap[1:]) < 1024, heap


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture
def certs(tmp_path):
    pytest.importorskip("cryptography")
    d = tmp_path / "certs"
    broker.make_certs(d)
    other = tmp_path / "other"
    broker.make_certs(other)
    return d, other


def _tls_broker(tmp_broker, d):
    return tmp_broker("allow_anonymous true\ncafile %s\ncertfile %s\nkeyfile %s\ntls_version tlsv1.2\n"
                      % (d / broker.CA_CERT, d / broker.SERVER_CERT, d / broker.SERVER_KEY))


def test_tls_with_the_pinned_ca(tmp_path, tmp_broker, certs):
    d, _ = certs
    b = _tls_broker(tmp_broker, d)
    r = _run(tmp_path, port=b.port, n=20, ca=str(d / broker.CA_DER), hostname="localhost")
    assert r["connected"] and r["drained"] and r["acked"] == 20, r


def test_tls_server_of_another_ca_is_refused(tmp_path, tmp_broker, certs):
    d, other = certs
    b = _tls_broker(tmp_broker, other)
    r = _run(tmp_path, port=b.port, n=1, ca=str(d / broker.CA_DER), hostname="localhost",
             connect_ms=1500)
    assert not r["connected"] and r["status"]["last_error"], r
    print("other CA: %s" % r["status"]["last_error"])


def test_tls_wrong_hostname_is_refused(tmp_path, tmp_broker, certs):
    d, _ = certs
    b = _tls_broker(tmp_broker, d)
    r = _run(tmp_path, port=b.port, n=1, ca=str(d / broker.CA_DER), hostname="broker.example",
             connect_ms=1500)
    assert not r["connected"] and r["status"]["last_error"], r
    print("wrong hostname: %s" % r["status"]["last_error"])
