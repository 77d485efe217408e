"""The generated gRPC code in pypoints/v1 is what scripts/gen_proto.py makes from proto/ now
(issue #4 §1: "a test fails if it is stale")."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytest.importorskip("grpc_tools", reason="grpcio-tools (the test extra) generates the code")


def _gen_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_proto", REPO / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_proto"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    gen = _gen_module()
    written = gen.generate(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_text() for p in written}
    committed_dir = REPO / "pypoints" / "v1"
    committed = {p.relative_to(REPO): p.read_text() for p in committed_dir.glob("*_pb2*.py*")}
    assert set(fresh) == set(committed), "run: python scripts/gen_proto.py"
    stale = sorted(str(p) for p in fresh if fresh[p] != committed[p])
    assert not stale, f"stale generated code {stale}; run: python scripts/gen_proto.py"


def test_one_proto_per_service_in_package_pypoints_v1() -> None:
    protos = sorted((REPO / "proto" / "pypoints" / "v1").glob("*.proto"))
    names = {p.stem for p in protos}
    assert {"common", "members", "ledger", "batch", "rules"} <= names
    for p in protos:
        text = p.read_text()
        assert "package pypoints.v1;" in text
        assert text.count("\nservice ") <= 1, f"{p.name} declares more than one service"
