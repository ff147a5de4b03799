"""docs/node-red-flow.json: an importable Node-RED flow on the documented topics, core nodes only."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

FLOW = Path(__file__).resolve().parents[1] / "docs" / "node-red-flow.json"
CORE_NODES = {"tab", "comment", "mqtt in", "mqtt out", "mqtt-broker", "function", "debug", "inject"}


def nodes() -> list[dict]:
    return json.loads(FLOW.read_text(encoding="utf-8"))


def test_the_flow_uses_core_nodes_only_so_it_imports_into_any_node_red():
    assert {node["type"] for node in nodes()} <= CORE_NODES


def test_it_subscribes_to_the_documented_topics_with_their_qos_and_formats():
    subscriptions = {node["topic"]: node for node in nodes() if node["type"] == "mqtt in"}
    assert set(subscriptions) == {"smartbin/+/item", "smartbin/+/counts", "smartbin/+/availability",
                                  "smartbin/+/stats", "smartbin/+/cmd/result"}
    assert subscriptions["smartbin/+/item"]["qos"] == "1"  # at least once, as the bin publishes it
    assert subscriptions["smartbin/+/availability"]["datatype"] == "utf8"  # plain text, not JSON
    assert all(node["datatype"] == "json" for topic, node in subscriptions.items() if "availability" not in topic)


def test_commands_go_out_at_qos_1_never_retained_to_a_local_broker_by_default():
    out = next(node for node in nodes() if node["type"] == "mqtt out")
    assert out["qos"] == "1" and out["retain"] == "false"
    broker = next(node for node in nodes() if node["type"] == "mqtt-broker")
    assert (broker["broker"], broker["port"]) == ("localhost", "1883")
    inject = next(node for node in nodes() if node["type"] == "inject" and node["topic"])
    assert inject["topic"] == "smartbin/smartbin-1/cmd/reset_counts" and json.loads(inject["payload"]) == {
        "request_id": "node-red"}


def test_every_wire_leads_to_a_node_of_the_flow():
    ids = {node["id"] for node in nodes()}
    assert all(target in ids for node in nodes() for output in node.get("wires", []) for target in output)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_every_function_node_is_valid_javascript(tmp_path):
    for node in nodes():
        if node["type"] != "function":
            continue
        source = tmp_path / "function.js"  # Node-RED runs the body as a function of msg, node, flow, context
        source.write_text(f"async function f(msg, node, context, flow, global, env, RED) {{\n{node['func']}\n}}\n")
        done = subprocess.run(["node", "--check", str(source)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{node['name']}: {done.stderr}"
