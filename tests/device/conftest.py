# Under CPython the device code is imported as the board imports it: `ln`.
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for p in (str(ROOT / "firmware"), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

collect_ignore = ["_mprun.py", "_vectors.py"]
