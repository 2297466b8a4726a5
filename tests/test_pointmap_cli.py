"""``lightnode pointmap check|show`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from lightnode.drivers import pointmap
from lightnode.pointmapcli import pointmap_group

GOOD = {
    "format": 1, "name": "relay-a", "device": {"kind": "relay", "model": "feeder relay"},
    "source": {"protocol": "mms", "ied": "IED1"},
    "points": [
        {"id": 1, "name": "XCBR1 position", "quantity": "position", "unit": "1", "resolution": 1,
         "order": 0, "report": "LD0/LLN0.BR.brcbEV01", "event": True,
         "read": {"ref": "LD0/XCBR1.Pos.stVal", "fc": "ST"}},
        {"id": 10, "name": "V_L1", "quantity": "voltage", "unit": "V", "resolution": 0.01,
         "order": 1, "period_ms": 1000, "deadband": 5, "alarm": {"low": 207},
         "read": {"ref": "LD0/MMXU1.PhV.phsA.cVal.mag.f", "fc": "MX"}},
    ],
}


def _write(tmp_path: Path, name: str, obj: object) -> str:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj, indent=1))
    return str(p)


def test_check_good_and_bad(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.json", GOOD)
    bad_map = json.loads(json.dumps(GOOD))
    bad_map["points"][1]["read"]["fc"] = "XX"
    bad = _write(tmp_path, "bad.json", bad_map)
    digest = pointmap.load(GOOD).digest()
    r = CliRunner().invoke(pointmap_group, ["check", good])
    assert r.exit_code == 0, r.output
    assert r.output == "%s: ok: relay-a, mms, 2 points, digest %s\n" % (good, digest)
    r = CliRunner().invoke(pointmap_group, ["check", good, bad, str(tmp_path / "none.json")])
    assert r.exit_code == 1
    assert "%s: ok: relay-a" % good in r.output
    assert "%s: refused: points[1].read.fc: 'XX' is not one of ST, MX" % bad in r.output
    assert "none.json: refused: map: cannot read" in r.output


def test_check_syntax_error(tmp_path: Path) -> None:
    f = _write(tmp_path, "cut.json", json.dumps(GOOD)[:-5])
    r = CliRunner().invoke(pointmap_group, ["check", f])
    assert r.exit_code == 1 and "refused: points" in r.output


def test_show_table_and_json(tmp_path: Path) -> None:
    good = _write(tmp_path, "good.json", GOOD)
    r = CliRunner().invoke(pointmap_group, ["show", good])
    assert r.exit_code == 0, r.output
    for words in ("relay-a", "relay (feeder relay), mms", "XCBR1 position",
                  "report LD0/LLN0.BR.brcbEV01", "1000 ms", "LD0/MMXU1.PhV.phsA.cVal.mag.f [MX]",
                  "207..", pointmap.load(GOOD).digest()):
        assert words in r.output, words
    r = CliRunner().invoke(pointmap_group, ["show", "--json", good])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["digest"] == pointmap.load(GOOD).digest()
    assert out["map"] == GOOD
    assert pointmap.load(out["map"]).digest() == out["digest"]


def test_show_refused(tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.json", dict(GOOD, format=2))
    r = CliRunner().invoke(pointmap_group, ["show", bad])
    assert r.exit_code == 1 and "refused: format: 2 is not 1" in r.output
