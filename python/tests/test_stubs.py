"""The type stubs (``framecache/_native.pyi``) name exactly what the built native module
has: its classes, each class's public methods and properties (with their parameters), its
functions and constants. A method added to the binding without its stub, or a stub left
behind by a removed one, fails here."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from framecache import _native

STUB = Path(__file__).resolve().parents[1] / "framecache" / "_native.pyi"

# Dunders a type checker relies on for iteration and the like; other dunders (``__repr__``,
# ``__reduce__``, ...) every object has, so neither side lists them.
PROTOCOL_DUNDERS = {"__iter__", "__next__", "__aiter__", "__anext__", "__len__", "__getitem__"}

# Stub-only classes: typing helpers that describe dicts and duck types, not native classes.
TYPING_BASES = {"TypedDict", "Protocol"}


def listed(name: str) -> bool:
    return not name.startswith("_") or name in PROTOCOL_DUNDERS


def base_names(node: ast.ClassDef) -> set[str]:
    names = set()
    for base in node.bases:
        target = base.value if isinstance(base, ast.Subscript) else base
        names.add(target.id if isinstance(target, ast.Name) else ast.unparse(target))
    return names


def parameters(node: ast.FunctionDef) -> list[str]:
    args = node.args
    names = [a.arg for a in [*args.posonlyargs, *args.args]]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return names


def runtime_parameters(function) -> list[str]:
    names = []
    for param in inspect.signature(function).parameters.values():
        prefix = {param.VAR_POSITIONAL: "*", param.VAR_KEYWORD: "**"}.get(param.kind, "")
        names.append(prefix + param.name)
    return names


class Stub:
    """What the stub file declares."""

    def __init__(self, path: Path):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        self.functions: dict[str, ast.FunctionDef] = {}
        self.constants: set[str] = set()
        self.classes: dict[str, dict[str, ast.FunctionDef | None]] = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and listed(node.name):
                self.functions[node.name] = node
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                self.constants.add(node.target.id)
            elif isinstance(node, ast.ClassDef) and not base_names(node) & TYPING_BASES:
                members: dict[str, ast.FunctionDef | None] = {}
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        members[item.name] = item
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members[item.target.id] = None  # an attribute
                self.classes[node.name] = members


def native_classes() -> dict[str, type]:
    return {n: v for n, v in vars(_native).items() if isinstance(v, type) and listed(n)}


def compare(what: str, native: set[str], stubbed: set[str]) -> list[str]:
    return [f"{what}: {n} is not in the stub" for n in sorted(native - stubbed)] + [
        f"{what}: {n} is in the stub only" for n in sorted(stubbed - native)
    ]


def differences(stub: Stub) -> list[str]:
    """Every way the stub and the native module disagree, as messages."""
    found = []
    functions = {n for n, v in vars(_native).items() if inspect.isbuiltin(v) and listed(n)}
    constants = {
        n
        for n, v in vars(_native).items()
        if (listed(n) or n == "__version__") and not callable(v) and not inspect.ismodule(v)
    }
    classes = native_classes()
    found += compare("class", set(classes), set(stub.classes))
    found += compare("function", functions, set(stub.functions))
    found += compare("constant", constants, stub.constants)
    for name in sorted(set(classes) & set(stub.classes)):
        cls, members = classes[name], stub.classes[name]
        found += compare(name, {n for n in vars(cls) if listed(n)}, {n for n in members if listed(n)})
        for member, node in members.items():
            if node is None or not hasattr(cls, member):
                continue
            if any(ast.unparse(d) == "property" for d in node.decorator_list):
                continue
            expected = parameters(node)
            if member == "__init__":  # the class's own signature has no self
                native, expected = cls, expected[1:]
            else:
                native = getattr(cls, member)
            if runtime_parameters(native) != expected:
                found.append(f"{name}.{member}: {runtime_parameters(native)} != stub {expected}")
    for name in sorted(functions & set(stub.functions)):
        if runtime_parameters(getattr(_native, name)) != parameters(stub.functions[name]):
            found.append(f"{name}: parameters differ from the stub")
    return found


def test_the_stub_names_what_the_module_has():
    assert differences(Stub(STUB)) == []


def test_a_stub_out_of_step_is_caught(tmp_path):
    text = STUB.read_text(encoding="utf-8")
    dropped = "    def exists_async(self, timeline: str) -> Awaitable[bool]: ...\n"
    assert dropped in text
    text = text.replace(dropped, "")
    text = text.replace(
        "    def timelines(self) -> list[str]: ...\n",
        "    def timelines(self, prefix: str) -> list[str]: ...\n    def gone(self) -> None: ...\n",
    )
    text += "def removed_function() -> None: ...\n"
    edited = tmp_path / "edited.pyi"
    edited.write_text(text, encoding="utf-8")
    assert differences(Stub(edited)) == [
        "function: removed_function is in the stub only",
        "FrameCache: exists_async is not in the stub",
        "FrameCache: gone is in the stub only",
        "FrameCache.timelines: ['self'] != stub ['self', 'prefix']",
    ]
