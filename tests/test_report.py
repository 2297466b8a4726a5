"""The run's report: terminal summary, the self-contained HTML file (checked in headless Chromium), run.json loading.

The run record here is made by a small grid of its own (plain math, seeded):
three PMUs over 60 s at 50 frames/s, a load step, a GPS step of 1 ms on
one PMU (18 degrees in its angles) that the node flags, a replay detected
and a tamper missed, expectations met and failed.
"""

import base64
import copy
import io
import json
import math
import random
import re
import struct
import time
from html.parser import HTMLParser

import pytest
from _chromium import find_chromium, open_page
from _need import missing
from click.testing import CliRunner
from lightnode.cli import main
from lightnode.errors import LightnodeError
from lightnode.simulator import report
from rich.console import Console

EVIL = "<script>alert(1)</script>"
PMUS = ("pmu-north", "pmu-south", "pmu-east $x$")  # a '$' must not start mathtext in a plot


def make_run(duration_s=60.0, rate=50, nodes=None, seed=7, timeline_extra=0):
    """A run record as the runner writes it, from a seeded grid model of our own."""
    rnd = random.Random(seed)
    n = int(duration_s * rate)
    t = [i / rate for i in range(n)]
    f, walk = [], 0.0
    for ti in t:
        walk += rnd.gauss(0, 0.0004)
        walk *= 0.999  # the governor pulls frequency back to nominal
        dip = (
            -0.08 * math.exp(-(ti - 20.0) / 4.0) * (1 - math.exp(-(ti - 20.0) / 0.6))
            if ti >= 20
            else 0.0
        )
        f.append(50.0 + walk + dip)
    freq, ang = {}, {}
    step_at, step_deg = 30.0, 18.0  # 1 ms at 50 Hz
    for k, name in enumerate(PMUS):
        phase, fs, a = (0.0, -12.0, -25.0)[k], [], []
        for i, ti in enumerate(t):
            phase += 360.0 * (f[i] - 50.0) / rate
            spoof = step_deg if (k == 2 and ti >= step_at) else 0.0
            a.append(round((phase + spoof + rnd.gauss(0, 0.02) + 180.0) % 360.0 - 180.0, 3))
            fs.append(round(f[i] + rnd.gauss(0, 0.0005), 5))
        freq[name], ang[name] = fs, a
    lights = (
        nodes
        if nodes is not None
        else [
            ("ln-north", "4c4e0001", "pmu", "pico_w", False),
            ("ln-south", "4c4e0002", "pmu", "pico_w", True),
            ("ln-east", "4c4e0003", "pmu", "esp32", False),
            (EVIL, "4c4e0004", "meter", "pico_w", False),
            ("ln-relay", "4c4e0005", "relay", "pico_w", False),
        ]
    )
    light_nodes = []
    for name, did, kind, board, fw in lights:
        tx = int(duration_s / 5)
        light_nodes.append(
            {
                "name": name,
                "device_id": did,
                "device_kind": kind,
                "board": board,
                "firmware": fw,
                "tx_signed": tx,
                "tx_committed": tx,
                "readings": tx * 250 if kind == "pmu" else tx * 5,
                "lost": 0,
            }
        )
    ingest_t = [float(s) for s in range(int(duration_s))]
    tx_per_s = [round(len(lights) / 5 + 3 * rnd.random(), 2) for _ in ingest_t]
    timeline = [
        {"t_s": 20.0, "kind": "load_step", "source": "grid", "detail": "+40 MW at bus 2"},
        {"t_s": 30.0, "kind": "attack", "source": "pmu-east", "detail": "gps_step 1 ms"},
        {
            "t_s": 40.0,
            "kind": "attack",
            "source": EVIL,
            "detail": "replay of 40 transactions " + EVIL,
        },
        {"t_s": 45.0, "kind": "breaker_open", "source": "relay-1", "detail": {"breaker": "CB2"}},
        {"t_s": 50.0, "kind": "attack", "source": "broker", "detail": "tamper"},
    ]
    for i in range(timeline_extra):
        timeline.append(
            {
                "t_s": (i * 7.3) % duration_s,
                "kind": "kind-%d" % (i % 30),
                "source": "dev-%d" % i,
                "detail": "extra %d" % i,
            }
        )
    detections = [
        {"t_s": 31.2, "kind": "time-step", "device": "pmu-east $x$", "detail": "step of 1.00 ms"},
        {
            "t_s": 33.0,
            "kind": "angle-drift",
            "device": "4c4e0003",
            "detail": "18.1 deg against pmu-north",
        },
        {"t_s": 44.0, "kind": "clock-bracket", "device": EVIL, "detail": EVIL},
    ]
    attacks = [
        {
            "name": "gps-step",
            "kind": "gps_step",
            "at_s": 30.0,
            "target": "pmu-east",
            "injected": 0,
            "rejected": 0,
            "flagged": 2,
            "detected": True,
            "detected_after_s": 1.2,
            "reasons": {},
            "flags": {"time-step": 1, "angle-drift": 1},
        },
        {
            "name": "replay",
            "kind": "replay",
            "at_s": 40.0,
            "target": EVIL,
            "injected": 40,
            "rejected": 40,
            "flagged": 0,
            "detected": True,
            "detected_after_s": 0.1,
            "reasons": {"replay": 38, "seq": 2},
            "flags": {},
        },
        {
            "name": "tamper",
            "kind": "tamper",
            "at_s": 50.0,
            "target": "ln-relay",
            "injected": 5,
            "rejected": 0,
            "flagged": 0,
            "detected": False,
            "detected_after_s": None,
            "reasons": {},
            "flags": {},
        },
    ]
    expectations = [
        {"name": "no_loss", "met": True, "detail": "0 legitimate transactions lost"},
        {
            "name": "attack_detected gps-step",
            "met": True,
            "detail": "time-step after 1.2 s (within 5 s)",
        },
        {"name": "attack_detected tamper", "met": False, "detail": "no reason or flag for " + EVIL},
    ]
    committed = sum(x["tx_committed"] for x in light_nodes)
    return {
        "scenario": {
            "name": "substation",
            "title": "A substation: PMUs, a relay, a meter",
            "description": "One minute; a GPS step and a replay. " + EVIL,
            "duration_s": duration_s,
            "seed": seed,
            "profile": "ci",
        },
        "started_at": "2026-03-01T12:00:00Z",
        "wall_s": duration_s + 3.4,
        "store": "postgresql://grid:s3cret@127.0.0.1:5432/ledger",
        "broker": "mqtt://127.0.0.1:1883",
        "light_nodes": light_nodes,
        "series": {"t_s": t, "frequency_hz": freq, "angle_deg": ang},
        "ingest": {"t_s": ingest_t, "tx_per_s": tx_per_s},
        "timeline": timeline,
        "attacks": attacks,
        "detections": detections,
        "expectations": expectations,
        "totals": {
            "transactions": committed + 45,
            "readings": sum(x["readings"] for x in light_nodes),
            "committed": committed,
            "rejected": 40,
            "flags": 3,
            "lost": 0,
        },
        "latency_ms": {"p50": 180.0, "p99": 920.5, "max": 1410.0},
        "ingest_tx_per_s": 2.7,
        "ok": False,
    }


@pytest.fixture(scope="module")
def run():
    return make_run()


@pytest.fixture(scope="module")
def rendered(run, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    t0 = time.perf_counter()
    out = report.render_html(run, path)
    return out, time.perf_counter() - t0


class _Doc(HTMLParser):
    """Well-formedness as far as HTML has it: every element that needs closing is closed in order."""

    VOID = {"meta", "link", "img", "br", "hr", "input", "col", "area", "base", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.imgs, self.scripts, self.problems, self.text = [], [], 0, [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag == "script":
            self.scripts += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append("</%s> closes %s" % (tag, self.stack[-1:] or "nothing"))
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(text):
    doc = _Doc()
    doc.feed(text)
    doc.close()
    return doc


def _png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_summary_has_the_verdicts(run):
    console = Console(record=True, width=160, file=io.StringIO())
    report.print_summary(run, console)
    text = console.export_text()
    assert "NOT MET" in text and "attack_detected tamper" in text
    assert "met" in text.replace("NOT MET", "")
    assert "detected after 1.2 s" in text and "NOT detected" in text
    assert "replay ×38" in text and "time-step ×1" in text  # reasons and flags, counted
    assert "Lost: 0 legitimate transactions" in text
    assert "p50 / p99 / max" in text and "180 / 920 / 1,410 ms" in text
    assert re.search(r"ingest rate[\s│]+2\.7 tx/s", text)
    assert "s3cret" not in text and "grid:***@127.0.0.1:5432" in text
    assert EVIL in text  # shown as text: rich markup in a name is not interpreted
    last = [line for line in text.splitlines() if line.strip()][-1]
    assert last.startswith("FAIL: 2/3 expectations met, 2/3 attacks detected, 0 lost")
    assert "not met: attack_detected tamper" in last


def test_summary_pass_and_losses_and_large_fleet():
    nodes = [
        (
            "ln-%03d" % i,
            "%08x" % i,
            "pmu" if i % 3 else "meter",
            "pico_w",
            i < 4,
        )
        for i in range(300)
    ]
    run = make_run(duration_s=20.0, nodes=nodes)
    run["light_nodes"][17]["lost"] = 2
    run["light_nodes"][17]["tx_committed"] -= 2
    run["totals"]["lost"] = 2
    run["ok"] = True
    for e in run["expectations"]:
        e["met"] = True
    console = Console(record=True, width=140, file=io.StringIO())
    report.print_summary(run, console)
    text = console.export_text()
    assert "LOST: 2 legitimate transaction(s)" in text
    assert "Light nodes: 300, by kind" in text
    assert "ln-017 (2 lost, 2/4 committed)" in text
    assert "ln-018" not in text  # compact: nodes one by one only when something is wrong
    assert text.strip().splitlines()[-1].startswith("PASS: 3/3 expectations met")


def test_html_is_well_formed_with_readable_plots(rendered, run):
    path, seconds = rendered
    text = path.read_text(encoding="utf-8")
    doc = _parse(text)
    assert not doc.problems, doc.problems[:5]
    assert not doc.stack, "unclosed: %s" % doc.stack
    assert doc.scripts == 0
    assert "http://" not in text and "https://" not in text  # nothing fetched from anywhere
    assert len(doc.imgs) == 4  # frequency, angles and detections, timeline, ingest
    for img in doc.imgs:
        assert len(img["alt"]) > 60, img["alt"]
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        w, h = _png_size(data)
        assert w > 300 and h > 300, (w, h, img["alt"][:40])
        assert (int(img["width"]), int(img["height"])) == (w, h)
        import matplotlib.image
        import numpy as np

        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.shape[:2] == (h, w)
        colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        assert len(colours) > 50, "a blank-looking plot: %d colours" % len(colours)
        # Ink covers a real part of the picture (lines, labels), yet most of it is background.
        ink = (pixels[..., :3].mean(axis=2) < 0.9).mean()
        assert 0.01 < ink < 0.6, ink
    alts = " ".join(img["alt"] for img in doc.imgs)
    assert "frequency in hertz" in alts and "phase angle in degrees" in alts
    assert "3 time-anomaly flag(s)" in alts
    body = "".join(doc.text)
    assert "FAIL: 2/3 expectations met" in body and "NOT detected" in body
    assert "replay ×38, seq ×2" in body and "legitimate transactions lost" in body
    assert "s3cret" not in text
    print("HTML report %s: %d bytes, rendered in %.2f s" % (path, len(text), seconds))
    assert seconds < 15


def test_every_run_string_is_escaped(rendered):
    text = rendered[0].read_text(encoding="utf-8")
    assert EVIL not in text
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # The parsed document gives the name back as text, where it appears in the record.
    assert EVIL in "".join(_parse(text).text)


def test_report_opens_in_headless_chromium(rendered, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        missing("chromium is not installed (Debian package chromium)")
    path = rendered[0]
    shot = path.with_name("report.png")
    page = open_page(chromium, path, tmp_path / "profile", screenshot=shot)
    print("screenshot of the report in Chromium: %s (%.1f s)" % (shot, page.seconds))
    assert page.errors == [], page.errors
    assert page.title.startswith("A substation")
    assert len(page.images) == 4
    for img in page.images:
        assert img["complete"] and img["naturalWidth"] > 300 and img["naturalHeight"] > 300, img
    w, h = _png_size(shot.read_bytes())
    assert w >= 1000 and h > 2000, (w, h)  # the whole page, not the first screen
    assert page.seconds < 20


def test_long_run_and_large_fleet_stay_small(tmp_path):
    nodes = [
        ("ln-%04d" % i, "%08x" % i, ("pmu", "meter", "relay")[i % 3], "pico_w", False)
        for i in range(600)
    ]
    run = make_run(
        duration_s=1200.0, rate=50, nodes=nodes, timeline_extra=800
    )  # 60,000 frames each
    run["light_nodes"][5]["lost"] = 1
    t0 = time.perf_counter()
    path = report.render_html(run, tmp_path / "big.html")
    seconds = time.perf_counter() - t0
    text = path.read_text(encoding="utf-8")
    size = len(text.encode())
    print(
        "1200 s, 3 PMUs at 50 frames/s, 600 light nodes, 805 events: %d bytes in %.2f s"
        % (size, seconds)
    )
    assert size < 2_500_000
    assert (
        "600 light nodes, grouped by kind" in text and "ln-0005" in text and "ln-0006" not in text
    )
    assert "The first 200 of 805 timeline entries" in text
    assert len(_parse(text).imgs) == 4
    assert seconds < 30


def test_series_gaps_and_no_pmu(tmp_path):
    run = make_run(duration_s=10.0)
    for values in run["series"]["frequency_hz"].values():
        values[100:200] = [None] * 100  # a communications loss
    assert len(_parse(report.render_html(run, tmp_path / "gap.html").read_text()).imgs) == 4
    run["series"] = {"t_s": [], "frequency_hz": {}, "angle_deg": {}}
    text = report.render_html(run, tmp_path / "nopmu.html").read_text()
    assert len(_parse(text).imgs) == 2 and "No PMU in this run" in text
    # Nothing at all happened: still a report, with the timeline as its only plot.
    run.update(timeline=[], attacks=[], detections=[], expectations=[], light_nodes=[], ok=True)
    run["ingest"] = {"t_s": [], "tx_per_s": []}
    run["latency_ms"] = {"p50": None, "p99": None, "max": None}
    text = report.render_html(run, tmp_path / "empty.html").read_text()
    assert len(_parse(text).imgs) == 1 and "No attack in this scenario" in text
    console = Console(record=True, width=120, file=io.StringIO())
    report.print_summary(run, console)
    assert "— / — / — ms" in console.export_text()


def test_load_run_names_what_is_wrong(tmp_path):
    good = make_run(duration_s=5.0)
    (tmp_path / "run.json").write_text(json.dumps(good))
    assert report.load_run(tmp_path)["scenario"]["name"] == "substation"
    assert report.load_run(tmp_path / "run.json")["ok"] is False

    def broken(change):
        r = copy.deepcopy(good)
        change(r)
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(r))
        with pytest.raises(report.RunRecordError) as e:
            report.load_run(p)
        assert isinstance(e.value, LightnodeError)
        return str(e.value)

    assert broken(lambda r: r["totals"].pop("lost")) == "run record: run.totals.lost: missing"
    msg = broken(lambda r: r["attacks"][1].__setitem__("detected", "yes"))
    assert msg == "run record: run.attacks[1].detected: expected true or false, got a string"
    msg = broken(lambda r: r["light_nodes"][0].__setitem__("lost", 1.5))
    assert "run.light_nodes[0].lost: expected an integer, got the number 1.5" in msg
    msg = broken(lambda r: r["series"]["angle_deg"]["pmu-north"].__setitem__(3, "x"))
    assert 'run.series.angle_deg["pmu-north"][3]: expected a number, got a string' in msg
    msg = broken(lambda r: r["series"]["frequency_hz"]["pmu-south"].pop())
    assert "249 values for 250 times" in msg
    assert "expected a number, got true/false" in broken(lambda r: r.__setitem__("wall_s", True))
    assert "expected an object, got a list" in broken(lambda r: r.__setitem__("scenario", []))

    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(LightnodeError, match="is not JSON"):
        report.load_run(tmp_path / "junk.json")
    with pytest.raises(LightnodeError, match="no run record at"):
        report.load_run(tmp_path / "nowhere")


def test_cli_rerenders_a_run(tmp_path):
    run_dir = tmp_path / "runs" / "substation"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(make_run(duration_s=10.0)))
    result = CliRunner().invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "FAIL: 2/3 expectations met" in result.output
    assert (run_dir / "report.html").is_file()
    assert str(run_dir / "report.html") in result.output.replace("\n", "")
    other = tmp_path / "elsewhere" / "r.html"
    result = CliRunner().invoke(main, ["report", str(run_dir / "run.json"), "--html", str(other)])
    assert result.exit_code == 0 and other.is_file()
    (run_dir / "run.json").write_text(json.dumps({"scenario": {}}))
    result = CliRunner().invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 1
    assert "run record: run.scenario.name: missing" in result.output


def test_chromium_check_sees_errors_and_broken_images(tmp_path):
    """The check above can fail: a page with a script error and a missing image is caught."""
    chromium = find_chromium()
    if chromium is None:
        missing("chromium is not installed (Debian package chromium)")
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title><link rel='icon' href='data:,'></head><body>"
        "<img src='missing.png' alt='x'><script>console.error('drawn wrong');"
        "null.x;</script></body></html>"
    )
    page = open_page(chromium, bad, tmp_path / "profile")
    joined = "\n".join(page.errors)
    assert "console.error: drawn wrong" in joined
    assert "exception: TypeError" in joined
    assert "ERR_FILE_NOT_FOUND" in joined
    assert len(page.images) == 1 and page.images[0]["naturalWidth"] == 0


def test_sparse_series_are_joined_and_gaps_kept():
    import numpy as np

    t = np.arange(0, 60, 0.1)
    y = np.full(len(t), np.nan)
    y[::5] = 50.0 + 0.01 * np.sin(t[::5])  # one value every fifth grid point
    tt, yy = report._line(t, y)
    assert len(tt) == 120 and np.isfinite(yy).all()  # drawn as one line, not as lone points
    y[200:400] = np.nan  # 20 s without data
    tt, yy = report._line(t, y)
    assert np.isnan(yy).sum() == 1 and 20.0 < tt[np.isnan(yy)][0] < 40.0
    # An angle that wraps is broken there, not drawn across the plot.
    ang = (np.arange(len(t)) * 3.0 + 180.0) % 360.0 - 180.0
    tt, yy = report._line(t, ang, wrap=True)
    assert np.isnan(yy).sum() == int(len(t) * 3.0 // 360)
    # A long series is cut to the plot's budget with its step kept.
    t = np.arange(0, 3600, 0.02)
    y = np.where(t < 1800.0, 0.0, 18.0)
    tt, yy = report._line(t, y)
    assert len(tt) <= report.MAX_PLOT_POINTS and set(np.unique(yy)) == {0.0, 18.0}


def test_summary_on_a_narrow_terminal(run):
    console = Console(record=True, width=80, file=io.StringIO())
    report.print_summary(run, console)
    text = console.export_text()
    assert "tamper (tamper at 50.0 s on ln-relay): NOT detected" in text
    assert "reasons replay ×38, seq ×2" in text
    assert "…" not in text  # folded, never cut
    assert max(len(line) for line in text.splitlines()) <= 80
