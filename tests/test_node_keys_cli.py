"""Putting a full node's keys into service from the command line, as an operator does.

``lightnode node --new-keys`` writes the key file and prints the public
keys; ``lightnode registry node-key`` registers each (signed by the admin);
a node whose keys the registry does not hold refuses to start, saying so.
"""

import json

from click.testing import CliRunner
from lightnode import registry
from lightnode.cli import main


def test_new_keys_registered_and_a_stranger_node_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    reg = str(tmp_path / "reg.db")
    assert run(main, ["registry", "init", "--admin", "alice", "--key-file", "alice.seed",
                      "--registry", reg]).exit_code == 0
    made = run(main, ["node", "--segment", "s1", "--registry", reg, "--key-file", "node.json",
                      "--new-keys", "node-a"])
    assert made.exit_code == 0, made.output
    lines = [line.split() for line in made.output.strip().splitlines()]
    assert [(n, role) for n, role, _ in lines] == [("node-a", "checkpoint"), ("node-a", "ack")]
    assert oct((tmp_path / "node.json").stat().st_mode & 0o777) == "0o600"
    for n, role, key in lines:
        r = run(main, ["registry", "node-key", n, role, key, "--registry", reg])
        assert r.exit_code == 0, r.output
    held = registry.open_registry(reg)
    for _n, role, key in lines:
        assert held.node_key_for("node-a", role, registry.now_us()) == bytes.fromhex(key)
    held.close()

    bad = run(main, ["registry", "node-key", "node-a", "ack", "zz", "--registry", reg])
    assert bad.exit_code != 0 and "KEY" in bad.output

    # a node with keys nobody registered: refused before it touches a broker
    seeds = json.loads((tmp_path / "node.json").read_text())
    seeds["checkpoint"] = "11" * 32
    (tmp_path / "other.json").write_text(json.dumps(seeds))
    refused = run(main, ["node", "--segment", "s1", "--registry", reg, "--key-file", "other.json",
                         "--broker", "mqtt://127.0.0.1:9"])
    assert refused.exit_code != 0
    assert "registry holds no current checkpoint key" in refused.output
