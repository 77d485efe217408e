"""`pypoints/_core.pyi` describes the compiled `pypoints._core` exactly: the same public names
(classes, functions, constants), the same public members per class (methods vs properties), the
same parameter names and defaults; and `py.typed` ships, so type checkers use the stub.

The comparison is a function (`stub_problems`) so the tests below can also prove that it fails
in both directions: a name the stub lacks, and a name the stub invents."""

from __future__ import annotations

import ast
import inspect
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import pypoints
import pypoints._core as core

PKG = Path(pypoints.__file__).resolve().parent
STUB = PKG / "_core.pyi"


@dataclass
class StubFunction:
    name: str
    params: list[tuple[str, bool, Any]]
    """(name, has default, default value or Ellipsis) without self/cls."""


@dataclass
class StubClass:
    name: str
    methods: dict[str, StubFunction] = field(default_factory=dict)
    properties: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)
    new: StubFunction | None = None


@dataclass
class Stub:
    constants: dict[str, str] = field(default_factory=dict)
    """name → annotation source"""
    aliases: set[str] = field(default_factory=set)
    """type aliases: stub-only helpers, not runtime names"""
    functions: dict[str, StubFunction] = field(default_factory=dict)
    classes: dict[str, StubClass] = field(default_factory=dict)


def _public(name: str) -> bool:
    return not name.startswith("_")


def _function(node: ast.FunctionDef, *, method: bool) -> StubFunction:
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    if method:
        positional = positional[1:]  # self / cls
    defaults: list[Any] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    params = []
    for arg, d in zip(positional, defaults):
        params.append((arg.arg, d is not None, ast.literal_eval(d) if d is not None else None))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        params.append((arg.arg, d is not None, ast.literal_eval(d) if d is not None else None))
    return StubFunction(node.name, params)


def _decorators(node: ast.FunctionDef) -> set[str]:
    return {ast.unparse(d) for d in node.decorator_list}


def _is_type_alias(node: ast.stmt) -> bool:
    if isinstance(node, ast.Assign):
        return True  # `X = tuple[...]`: a stub can only assign type expressions
    if isinstance(node, ast.AnnAssign):
        return ast.unparse(node.annotation) in ("TypeAlias", "typing.TypeAlias", "typing_extensions.TypeAlias")
    return type(node).__name__ == "TypeAlias"  # `type X = ...` (3.12+)


def parse_stub(source: str) -> Stub:
    stub = Stub()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstring
        if _is_type_alias(node):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None) or node.name]  # type: ignore[attr-defined]
            stub.aliases.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub.constants[node.target.id] = ast.unparse(node.annotation)
        elif isinstance(node, ast.FunctionDef):
            stub.functions[node.name] = _function(node, method=False)
        elif isinstance(node, ast.ClassDef):
            cls = StubClass(node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    decos = _decorators(item)
                    if "property" in decos:
                        cls.properties.add(item.name)
                    elif item.name == "__new__" or item.name == "__init__":
                        cls.new = _function(item, method=True)
                    else:
                        is_static = "staticmethod" in decos
                        cls.methods[item.name] = _function(item, method=not is_static)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    cls.attributes.add(item.target.id)
                elif isinstance(item, ast.Expr):
                    continue  # docstring or `...`
                else:
                    raise AssertionError(f"stub class {node.name}: unexpected statement {ast.unparse(item)!r}")
            stub.classes[node.name] = cls
        else:
            # Anything else (e.g. `if sys.version_info`) would need real handling: say so.
            raise AssertionError(f"stub: unexpected top-level statement {ast.unparse(node)!r}")
    return stub


def _runtime_params(obj: Any, *, method: bool) -> list[tuple[str, bool, Any]] | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None  # no __text_signature__: nothing to compare
    params = list(sig.parameters.values())
    if method and params and params[0].name in ("self", "cls", "$self"):
        params = params[1:]
    out = []
    for p in params:
        has = p.default is not inspect.Parameter.empty
        out.append((p.name, has, p.default if has else None))
    return out


def _compare_params(where: str, stub_fn: StubFunction, runtime: list[tuple[str, bool, Any]] | None) -> list[str]:
    if runtime is None:
        return []
    problems = []
    s_names = [p[0] for p in stub_fn.params]
    r_names = [p[0] for p in runtime]
    if s_names != r_names:
        return [f"{where}: stub parameters {s_names} but the module has {r_names}"]
    for (name, s_has, s_val), (_, r_has, r_val) in zip(stub_fn.params, runtime):
        if s_has != r_has:
            problems.append(f"{where}({name}): default in stub={s_has}, in module={r_has}")
        elif s_has and s_val is not Ellipsis and r_val is not Ellipsis and s_val != r_val:
            problems.append(f"{where}({name}): stub default {s_val!r} but the module's is {r_val!r}")
    return problems


def _runtime_public(obj: Any) -> set[str]:
    return {n for n in dir(obj) if _public(n)}


def stub_problems(source: str, module: types.ModuleType) -> list[str]:
    """Every disagreement between a stub's text and a module, as readable lines."""
    stub = parse_stub(source)
    problems: list[str] = []

    declared = set(stub.constants) | set(stub.functions) | set(stub.classes)
    runtime = _runtime_public(module)
    for name in sorted(runtime - declared):
        problems.append(f"{module.__name__}.{name} exists but the stub does not declare it")
    for name in sorted(declared - runtime):
        problems.append(f"the stub declares {name} but {module.__name__} has no such attribute")
    for name in sorted(stub.aliases & runtime):
        problems.append(f"the stub declares {name} as a type alias but the module defines it")
    # `__all__` (pyo3 keeps one) must list the same public names when present.
    exported = getattr(module, "__all__", None)
    if exported is not None and set(exported) != runtime:
        problems.append(f"{module.__name__}.__all__ {sorted(exported)} differs from its public names")

    for name, annotation in stub.constants.items():
        if name not in runtime:
            continue
        value = getattr(module, name)
        if inspect.isclass(value) or callable(value):
            problems.append(f"stub declares {name}: {annotation} as a constant but it is {type(value).__name__}")
        elif annotation in ("int", "str", "float", "bytes", "bool") and type(value).__name__ != annotation:
            problems.append(f"stub declares {name}: {annotation} but the value is a {type(value).__name__}")

    for name, fn in stub.functions.items():
        if name not in runtime:
            continue
        obj = getattr(module, name)
        if not inspect.isroutine(obj):
            problems.append(f"stub declares function {name} but the module's is a {type(obj).__name__}")
            continue
        problems += _compare_params(name, fn, _runtime_params(obj, method=False))

    for name, cls in stub.classes.items():
        if name not in runtime:
            continue
        obj = getattr(module, name)
        if not inspect.isclass(obj):
            problems.append(f"stub declares class {name} but the module's is a {type(obj).__name__}")
            continue
        members = set(cls.methods) | cls.properties | cls.attributes
        public = {n for n in members if _public(n)}
        actual = _runtime_public(obj)
        for m in sorted(actual - public):
            problems.append(f"{name}.{m} exists but the stub does not declare it")
        for m in sorted(public - actual):
            problems.append(f"the stub declares {name}.{m} but the class has no such attribute")
        for m in sorted(public & actual):
            attr = inspect.getattr_static(obj, m)
            if m in cls.properties and not inspect.isdatadescriptor(attr):
                problems.append(f"the stub declares {name}.{m} a property but it is a {type(attr).__name__}")
            if m in cls.methods:
                if not inspect.isroutine(attr) and not isinstance(attr, (staticmethod, classmethod)):
                    problems.append(f"the stub declares {name}.{m} a method but it is a {type(attr).__name__}")
                else:
                    problems += _compare_params(f"{name}.{m}", cls.methods[m], _runtime_params(getattr(obj, m), method=True))
        if cls.new is not None:
            problems += _compare_params(f"{name}()", cls.new, _runtime_params(obj, method=False))
    return problems


# ----- the real stub against the real module -----


def test_stub_matches_compiled_module() -> None:
    problems = stub_problems(STUB.read_text(), core)
    assert problems == [], "\n".join(problems)


def test_stub_declares_every_class_member_kind() -> None:
    """Spot checks that the parser saw what it should (guards the comparison itself)."""
    stub = parse_stub(STUB.read_text())
    assert {"Engine", "Receipt"} <= set(stub.classes)
    assert {"id", "seq", "replayed", "lots_used"} <= stub.classes["Receipt"].properties
    assert {"submit", "execute", "audit", "backup", "close"} <= set(stub.classes["Engine"].methods)
    assert "path" in stub.classes["Engine"].properties
    assert stub.classes["Engine"].new is not None
    assert {"quote_cash", "hash_id_number"} <= set(stub.functions)
    assert "BATCH_SIZE_MAX" in stub.constants


def test_py_typed_marker_ships_beside_the_stub() -> None:
    assert (PKG / "py.typed").is_file(), "pypoints/py.typed is missing: type checkers would ignore the stub"
    assert STUB.is_file()
    # The stub sits next to the compiled module it describes.
    assert Path(core.__file__).resolve().parent == STUB.parent


# ----- the comparison fails in both directions -----


def _without_line(source: str, startswith: str) -> str:
    lines = source.splitlines()
    hits = [i for i, line in enumerate(lines) if line.strip().startswith(startswith)]
    assert hits, f"no stub line starts with {startswith!r}"
    del lines[hits[0]]
    return "\n".join(lines) + "\n"


def test_fails_when_the_stub_misses_a_module_constant() -> None:
    source = _without_line(STUB.read_text(), "QUEUE_DEPTH_MAX:")
    problems = stub_problems(source, core)
    assert any("QUEUE_DEPTH_MAX exists but the stub does not declare it" in p for p in problems), problems


def test_fails_when_the_stub_misses_a_module_function() -> None:
    source = STUB.read_text().replace("def hash_id_number(number: str) -> str: ...", "")
    problems = stub_problems(source, core)
    assert any("hash_id_number exists but the stub does not declare it" in p for p in problems), problems


def test_fails_when_the_stub_misses_a_method() -> None:
    source = _without_line(STUB.read_text(), "def entries_of(")
    problems = stub_problems(source, core)
    assert problems == ["Engine.entries_of exists but the stub does not declare it"]


def test_fails_when_the_stub_misses_a_property() -> None:
    source = STUB.read_text().replace("    @property\n    def cursor(self) -> str | None: ...\n", "")
    problems = stub_problems(source, core)
    assert problems == ["Receipt.cursor exists but the stub does not declare it"]


def test_fails_when_the_stub_invents_names() -> None:
    source = STUB.read_text() + (
        "\nNOT_A_LIMIT: int\n"
        "def not_a_function(x: int) -> int: ...\n"
        "class NotAClass: ...\n"
    )
    problems = stub_problems(source, core)
    for name in ("NOT_A_LIMIT", "not_a_function", "NotAClass"):
        assert f"the stub declares {name} but pypoints._core has no such attribute" in problems, problems


def test_fails_when_the_stub_invents_class_members() -> None:
    source = STUB.read_text().replace(
        "    def close(self) -> None: ...\n",
        "    def close(self) -> None: ...\n    def compact(self) -> None: ...\n"
        "    @property\n    def size(self) -> int: ...\n",
    )
    problems = stub_problems(source, core)
    assert sorted(problems) == [
        "the stub declares Engine.compact but the class has no such attribute",
        "the stub declares Engine.size but the class has no such attribute",
    ]


def test_fails_when_a_property_is_stubbed_as_a_method() -> None:
    source = STUB.read_text().replace("    @property\n    def seq(self) -> int: ...\n",
                                      "    def seq(self) -> int: ...\n")
    problems = stub_problems(source, core)
    assert problems and all("Receipt.seq" in p for p in problems), problems


def test_fails_when_parameters_drift() -> None:
    source = STUB.read_text().replace("def hash_id_number(number: str)", "def hash_id_number(id_number: str)")
    source = source.replace('durability: str = "sync"', 'durability: str = "async"')
    problems = stub_problems(source, core)
    assert any(p.startswith("hash_id_number: stub parameters ['id_number']") for p in problems), problems
    assert any("Engine()(durability): stub default 'async'" in p for p in problems), problems


def test_fails_when_the_module_grows_or_loses_names() -> None:
    """The other direction seen from the module: a fake module with one name more, one less."""
    fake = types.ModuleType("pypoints._core")
    for name in _runtime_public(core):
        if name != "hash_id_number":
            setattr(fake, name, getattr(core, name))
    fake.EXTRA_LIMIT = 1  # type: ignore[attr-defined]
    problems = stub_problems(STUB.read_text(), fake)
    assert "pypoints._core.EXTRA_LIMIT exists but the stub does not declare it" in problems
    assert "the stub declares hash_id_number but pypoints._core has no such attribute" in problems


@pytest.mark.parametrize("alias", ["LotSlice", "LotRow"])
def test_type_aliases_are_stub_only(alias: str) -> None:
    stub = parse_stub(STUB.read_text())
    assert alias in stub.aliases
    assert not hasattr(core, alias)
