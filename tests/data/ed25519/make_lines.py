"""Rebuilds the JSON-lines files of this folder from the shared vectors.

    .venv/bin/python tests/data/ed25519/make_lines.py /work/shared/vectors

One case per line, so a board-sized heap reads them one at a time. The
files end in .json (not .jsonl) because the wasm test runner copies only
.py, .mpy and .json files. The CCTV verdicts come from libsodium through
PyNaCl, not from the code under test.
"""

import json
import sys
from pathlib import Path

import nacl
import nacl.exceptions
import nacl.signing

HERE = Path(__file__).resolve().parent


def _write(name, rows):
    with open(HERE / name, "w") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")


def _libsodium_accepts(key, msg, sig):
    try:
        nacl.signing.VerifyKey(key).verify(msg, sig)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False


def main(src):
    src = Path(src)
    v = json.loads((src / "ed25519.json").read_text())
    rows = []
    for i, c in enumerate(v["rfc8032"]):
        rows.append(dict(c, case=f"RFC 8032 7.1 test {i + 1}"))
    for i, c in enumerate(v["generated"]):
        rows.append(dict(c, case=f"block edge {i} ({len(c['message']) // 2} bytes)"))
    for row in rows:
        if "sha512" not in row:
            import hashlib

            row["sha512"] = hashlib.sha512(bytes.fromhex(row["message"])).hexdigest()
    _write("sign.json", rows)

    w = json.loads((src / "ed25519-wycheproof.json").read_text())
    rows = []
    for g in w["testGroups"]:
        for t in g["tests"]:
            rows.append(
                {
                    "tcId": t["tcId"],
                    "pk": g["publicKey"]["pk"],
                    "msg": t["msg"],
                    "sig": t["sig"],
                    "valid": t["result"] == "valid",
                    "flags": t["flags"],
                }
            )
    assert len(rows) == w["numberOfTests"] == 151
    _write("wycheproof.json", rows)

    cctv = json.loads((src / "ed25519-cctv.json").read_text())
    rows = []
    for c in cctv:
        key, sig, msg = bytes.fromhex(c["key"]), bytes.fromhex(c["sig"]), c["msg"].encode()
        rows.append(
            {
                "n": c["number"],
                "key": c["key"],
                "sig": c["sig"],
                "msg": msg.hex(),
                "flags": c["flags"],
                "libsodium": _libsodium_accepts(key, msg, sig),
            }
        )
    assert len(rows) == 914
    _write("cctv.json", rows)
    print("PyNaCl", nacl.__version__, "; CCTV accepted:", sum(r["libsodium"] for r in rows))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/vectors")
