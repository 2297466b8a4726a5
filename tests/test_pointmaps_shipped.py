"""Every shipped point map (drivers/maps/*.json) and the example of
docs/point-maps.md validate; each digest is the same under CPython and
inside the unix port; a 256-point map loads within the pico_w budget."""

import json
import re
from pathlib import Path

import pytest
from lightnode import micropython as mp
from lightnode.drivers import pointmap
from lightnode.errors import HarnessError

ROOT = Path(__file__).resolve().parents[1]
MAPS = ROOT / "drivers" / "maps"
EXPECTED = ("meter_modbus.json", "meter_tap.json", "relay_mms.json", "pmu_c37118.json")
SHIPPED = sorted(MAPS.glob("*.json"))


def _unix(code, **kw):
    try:
        mp.find_micropython()
    except HarnessError as e:
        pytest.skip(str(e))
    return mp.run_unix(code=code, **kw).check().results


def _doc_example():
    text = (ROOT / "docs" / "point-maps.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/point-maps.md should hold one JSON example"
    return blocks[0]


def test_some_expected_map_is_shipped():
    # the maps land with their drivers; until then, test what is there
    present = [n for n in EXPECTED if (MAPS / n).is_file()]
    if not present:
        pytest.skip("no shipped map in drivers/maps yet")
    assert present


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_map_validates(path):
    m = pointmap.load(path.read_bytes())
    with path.open("rb") as f:
        assert pointmap.load(f).digest() == m.digest()
    assert pointmap.load(json.loads(path.read_text())).digest() == m.digest()
    assert len(m) >= 1


def test_doc_example_validates():
    m = pointmap.load(_doc_example())
    assert (m.name, m.protocol, len(m)) == ("meter-3ph-modbus", "modbus", 1)


@pytest.mark.micropython
def test_digests_equal_inside_unix_port():
    files = [str(p) for p in SHIPPED]
    code = (
        "from lightnode.drivers import pointmap\n"
        "for name in %r:\n"
        "    with open(name, 'rb') as f:\n"
        "        mp_result([name, pointmap.load(f).digest()])\n"
        "mp_result(['doc', pointmap.load(%r).digest()])\n" % (files, _doc_example())
    )
    got = dict(_unix(code, board="pico_w"))
    for p in SHIPPED:
        assert got[str(p)] == pointmap.load(p.read_bytes()).digest(), p.name
    assert got["doc"] == pointmap.load(_doc_example()).digest()


_POINT = ('{"id": %d, "name": "P%03d voltage L1", "quantity": "voltage", "unit": "V",'
          ' "resolution": 0.01, "order": 1, "period_ms": 1000, "deadband": 0.5,'
          ' "alarm": {"low": 207.0, "high": 253.0},'
          ' "read": {"table": "holding", "address": %d, "type": "f32", "order": "CDAB"}}')


def _big(n):
    points = ",\n".join(_POINT % (i, i, 2 * i) for i in range(n))
    return ('{"format": 1, "name": "meter-256", "device": {"kind": "meter", "model": "m"},'
            ' "source": {"protocol": "modbus", "mode": "poll", "unit": 1}, "points": [\n'
            + points + "\n]}\n")


@pytest.mark.micropython
def test_256_points_at_pico_w_budget(tmp_path):
    full = tmp_path / "full.json"
    full.write_text(_big(256))
    over = tmp_path / "over.json"
    over.write_text(_big(257))
    code = (
        "import gc\n"
        "from lightnode.drivers import pointmap\n"
        "gc.collect()\n"
        "with open(%r, 'rb') as f:\n"
        "    m = pointmap.load(f)\n"
        "gc.collect()\n"
        "mp_result({'n': len(m), 'digest': m.digest(), 'free': gc.mem_free()})\n"
        "m = None\n"
        "gc.collect()\n"
        "try:\n"
        "    with open(%r, 'rb') as f:\n"
        "        pointmap.load(f)\n"
        "    mp_result({'over': None})\n"
        "except pointmap.PointMapError as e:\n"
        "    mp_result({'over': str(e)})\n" % (str(full), str(over))
    )
    first, second = _unix(code, board="pico_w")
    assert first["n"] == 256
    assert first["digest"] == pointmap.load(full.read_bytes()).digest()
    assert second["over"] == "points: more than 256 points"
    with pytest.raises(pointmap.PointMapError, match="^points: more than 256 points$"):
        pointmap.load(over.read_bytes())
