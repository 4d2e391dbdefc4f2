"""Static checks and restricted compilation of reward programs, plus the sandbox child's entry point.

This module imports only the standard library and numpy, because the sandbox child loads it by
file path (no package ``__init__`` runs there, so nothing heavy or stateful is imported into the
process that runs untrusted code). `embodied.rewards.code` is the public face.

Threat model, in short: the source comes from an LLM (or a person) and may be hostile. Static
checks reject anything outside a small allow-list of Python; the program then only ever sees
restricted builtins, the `math` module and a filtered numpy namespace. The dry run adds process
isolation on top (see `child_main`).
"""

from __future__ import annotations

import ast
import math
import re
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

CONTRACT = "compute_reward"
"""Name of the function every reward program defines: compute_reward(view, action) -> (float, dict)."""

ALLOWED_MODULES = ("math", "numpy")

MAX_COMPONENTS = 32
MAX_NAME_LEN = 64
MAX_SOURCE_CHARS = 100_000

# Names a program may never mention, bound or not: they reach the interpreter's internals.
FORBIDDEN_NAMES = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "globals",
        "locals",
        "vars",
        "dir",
        "__import__",
        "breakpoint",
        "input",
        "type",
        "object",
        "super",
        "memoryview",
        "classmethod",
        "staticmethod",
        "property",
        "help",
        "exit",
        "quit",
        "copyright",
        "credits",
        "license",
        "bytearray",
        "id",
        "callable",
        "issubclass",
        "aiter",
        "anext",
        "BaseException",
        "SystemExit",
        "KeyboardInterrupt",
        "GeneratorExit",
        "importlib",
        "os",
        "sys",
        "subprocess",
        "socket",
        "builtins",
        "ctypes",
        "pickle",
        "marshal",
        "shutil",
        "pathlib",
        "io",
        "signal",
        "threading",
        "multiprocessing",
    }
)

# Attribute names a program may never use, on any object. Frames, code and tracebacks lead back to
# real builtins; `format` does attribute access inside strings ('{0.gi_frame}'); `mro` reaches
# `object`; the numpy names read/write files, load code, or install process-wide hooks.
FORBIDDEN_ATTRS = frozenset(
    {
        "format",
        "format_map",
        "mro",
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "gi_running",
        "gi_suspended",
        "cr_frame",
        "cr_code",
        "cr_await",
        "cr_origin",
        "cr_running",
        "ag_frame",
        "ag_code",
        "ag_await",
        "ag_running",
        "tb_frame",
        "tb_next",
        "tb_lasti",
        "tb_lineno",
        "f_back",
        "f_builtins",
        "f_code",
        "f_globals",
        "f_locals",
        "f_trace",
        "f_lasti",
        "f_lineno",
        "func_globals",
        "func_code",
        "im_func",
        "im_self",
        "with_traceback",
        # numpy: files, code loading, process-wide state
        "tofile",
        "fromfile",
        "dump",
        "dumps",
        "load",
        "loads",
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "loadtxt",
        "genfromtxt",
        "fromregex",
        "memmap",
        "open_memmap",
        "DataSource",
        "ctypes",
        "ctypeslib",
        "lib",
        "testing",
        "test",
        "f2py",
        "distutils",
        "os",
        "sys",
        "compat",
        "core",
        "info",
        "source",
        "lookfor",
        "who",
        "show_config",
        "show_runtime",
        "get_include",
        "add_newdoc",
        "add_docstring",
        "add_newdoc_ufunc",
        "seterr",
        "seterrcall",
        "geterrcall",
        "setbufsize",
        "set_printoptions",
        "set_string_function",
        "setflags",
        "seterrobj",
        "errstate",
        "printoptions",
        "byte_bounds",
        # numpy.random: raw pointers (cffi/capsule) and the process-wide generator's state
        "cffi",
        "capsule",
        "seed",
        "set_state",
    }
)

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Module,
    ast.FunctionDef,
    ast.arguments,
    ast.arg,
    ast.Return,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.For,
    ast.While,
    ast.If,
    ast.Break,
    ast.Continue,
    ast.Pass,
    ast.Expr,
    ast.Import,
    ast.ImportFrom,
    ast.alias,
    ast.Try,
    ast.ExceptHandler,
    ast.Raise,
    ast.Assert,
    ast.Delete,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.Lambda,
    ast.IfExp,
    ast.Dict,
    ast.Set,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.comprehension,
    ast.Compare,
    ast.Call,
    ast.keyword,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.Starred,
    ast.Name,
    ast.List,
    ast.Tuple,
    ast.Slice,
    ast.NamedExpr,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.Load,
    ast.Store,
    ast.Del,
    ast.And,
    ast.Or,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.MatMult,
    ast.Div,
    ast.Mod,
    ast.Pow,
    ast.LShift,
    ast.RShift,
    ast.BitOr,
    ast.BitXor,
    ast.BitAnd,
    ast.FloorDiv,
    ast.Invert,
    ast.Not,
    ast.UAdd,
    ast.USub,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.Is,
    ast.IsNot,
    ast.In,
    ast.NotIn,
)

_WHY_NOT: dict[str, str] = {
    "ClassDef": "class definitions are not allowed (they reach dunder machinery)",
    "Global": "'global' is not allowed (reward programs are pure functions)",
    "Nonlocal": "'nonlocal' is not allowed (reward programs are pure functions)",
    "With": "'with' blocks are not allowed",
    "AsyncFunctionDef": "async functions are not allowed",
    "Await": "'await' is not allowed",
    "Yield": "'yield' is not allowed (compute_reward must return, not generate)",
    "YieldFrom": "'yield from' is not allowed",
    "Match": "'match' statements are not allowed",
    "TryStar": "'except*' is not allowed",
}

_DUNDER_RE = re.compile(r"__\w+__")


class CodeCheckError(ValueError):
    """A reward program failed a check. `kind` is a short machine-readable reason; `line` is 1-based."""

    def __init__(self, kind: str, message: str, line: int | None = None) -> None:
        self.kind = kind
        self.reason = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


# --------------------------------------------------------------------------------------------------
# extraction


_FENCE_RE = re.compile(
    r"^[ \t]*(```+|~~~+)[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)
_CODE_START_RE = re.compile(r"^(import |from |def |@|[A-Z_][A-Z0-9_]* *=)", re.MULTILINE)


def extract_code(text: str) -> str:
    """Pull the program out of an LLM response: a fenced block if there is one, else the code lines.

    Fenced: the block that defines `compute_reward` (the last such block, as models tend to put a
    final version last), else the first python block. An unclosed fence (truncated response) yields
    everything after it. Unfenced: from the first line that starts like module-level code to the
    longest prefix that parses, so trailing prose is dropped.
    """
    if not isinstance(text, str):
        raise CodeCheckError("extract", f"expected the response text, got {type(text).__name__}")
    text = text.replace("\r\n", "\n")
    blocks = [(m.group(2).lower(), m.group(3)) for m in _FENCE_RE.finditer(text)]
    if blocks:
        with_contract = [code for _, code in blocks if f"def {CONTRACT}" in code]
        if with_contract:
            return with_contract[-1].strip("\n") + "\n"
        python = [code for lang, code in blocks if lang in ("python", "py", "python3", "")]
        return (python or [blocks[0][1]])[0].strip("\n") + "\n"
    if f"def {CONTRACT}" in text:
        try:
            ast.parse(text)
        except (SyntaxError, ValueError):
            pass
        else:
            return text  # already a program: pass it through untouched
    start = _CODE_START_RE.search(text)
    if start is None:
        if f"def {CONTRACT}" not in text:
            raise CodeCheckError("extract", f"the response contains no code (no fenced block and no 'def {CONTRACT}')")
        body = text
    else:
        body = text[start.start() :]
    lines = body.split("\n")
    # Drop trailing prose: the longest prefix that parses and still defines the contract.
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if f"def {CONTRACT}" not in candidate:
            break
        try:
            ast.parse(candidate)
        except SyntaxError:
            continue
        return candidate.rstrip() + "\n"
    # Nothing parses: keep the code where it was, prose before it blanked, so the syntax error's
    # line number is the line of the response (and of a hand-written file) it really is on.
    dropped = text[: len(text) - len(body)].count("\n")
    return "\n" * dropped + body.rstrip() + "\n"


# --------------------------------------------------------------------------------------------------
# static checks


def _is_docstring(node: ast.AST, parents: Mapping[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    if not isinstance(parent, ast.Expr):
        return False
    owner = parents.get(parent)
    body = getattr(owner, "body", None)
    return isinstance(body, list) and bool(body) and body[0] is parent


def _const_expr(node: ast.AST) -> bool:
    """A module-level value that is cheap and bounded to evaluate: literals, containers of them,
    arithmetic without powers, `math.pi`-style constants, and numpy array constructors over
    literals. Module level runs at load time in the caller's process, so it must not loop or bomb."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float, str, bool, type(None))) and not (
            isinstance(node.value, str) and len(node.value) > 10_000
        )
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return len(node.elts) <= 10_000 and all(_const_expr(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return (
            len(node.keys) <= 10_000
            and all(k is not None and _const_expr(k) for k in node.keys)
            and all(_const_expr(v) for v in node.values)
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _const_expr(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        return _numeric_leaf(node.left) and _numeric_leaf(node.right)
    if isinstance(node, ast.Attribute):
        return isinstance(node.value, ast.Name)  # e.g. math.pi, np.inf (names checked elsewhere)
    if isinstance(node, ast.Call):
        f = node.func
        return (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and f.attr in ("array", "asarray")
            and all(_const_expr(a) for a in node.args)
            and all(isinstance(k.value, (ast.Constant, ast.Attribute)) for k in node.keywords)
        )
    return False


def _numeric_leaf(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool) and abs(node.value) < 1e300
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _numeric_leaf(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        return _numeric_leaf(node.left) and _numeric_leaf(node.right)
    if isinstance(node, ast.Attribute):
        return isinstance(node.value, ast.Name)
    return False


def _bound_names(tree: ast.Module) -> set[str]:
    """Every name the program binds anywhere (scope-insensitive; used to catch unknown names)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def check_source(source: str) -> ast.Module:
    """Parse and allow-list a reward program. Returns the tree with annotations stripped.

    Raises:
        CodeCheckError: the first violation, with its line.
    """
    if not isinstance(source, str):
        raise CodeCheckError("extract", f"source must be a string, got {type(source).__name__}")
    if len(source) > MAX_SOURCE_CHARS:
        raise CodeCheckError("size", f"program is {len(source)} characters; the limit is {MAX_SOURCE_CHARS}")
    if not source.strip():
        raise CodeCheckError("extract", "the program is empty")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise CodeCheckError("syntax", f"syntax error: {exc.msg}", exc.lineno) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        raise CodeCheckError("syntax", f"cannot parse: {type(exc).__name__}: {exc}") from None

    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if not isinstance(node, _ALLOWED_NODES):
            name = type(node).__name__
            raise CodeCheckError("forbidden", _WHY_NOT.get(name, f"{name} is not allowed in reward programs"), line)
        if isinstance(node, ast.Name):
            if node.id in FORBIDDEN_NAMES:
                raise CodeCheckError("forbidden", f"name {node.id!r} is not allowed", line)
            if node.id.startswith("__"):
                raise CodeCheckError("forbidden", f"dunder name {node.id!r} is not allowed", line)
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise CodeCheckError("forbidden", f"private/dunder attribute {node.attr!r} is not allowed", line)
            if node.attr in FORBIDDEN_ATTRS:
                raise CodeCheckError("forbidden", f"attribute {node.attr!r} is not allowed", line)
            if not isinstance(node.ctx, ast.Load):
                raise CodeCheckError(
                    "forbidden", f"assigning or deleting attributes ({node.attr!r}) is not allowed", line
                )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DUNDER_RE.search(node.value):
            if not _is_docstring(node, parents):
                raise CodeCheckError("forbidden", f"string {node.value[:40]!r} mentions a dunder name", line)
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            raise CodeCheckError("forbidden", "bytes literals are not allowed", line)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if parents.get(node) is not tree:
                raise CodeCheckError("forbidden", "imports are only allowed at the top of the program", line)
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    raise CodeCheckError("forbidden", "relative imports are not allowed", line)
                mods = [node.module or ""]
                if any(a.name == "*" for a in node.names):
                    raise CodeCheckError("forbidden", "'import *' is not allowed", line)
                for a in node.names:
                    if a.name.startswith("_") or a.name in FORBIDDEN_ATTRS or a.name in FORBIDDEN_NAMES:
                        raise CodeCheckError(
                            "forbidden", f"importing {a.name!r} from {node.module} is not allowed", line
                        )
            else:
                mods = [a.name for a in node.names]
            for mod in mods:
                root = mod.split(".")[0]
                parts = mod.split(".")
                if root not in ALLOWED_MODULES or any(p.startswith("_") or p in FORBIDDEN_ATTRS for p in parts[1:]):
                    raise CodeCheckError(
                        "forbidden_import",
                        f"import of {mod!r} is not allowed (only {', '.join(ALLOWED_MODULES)})",
                        line,
                    )
        elif isinstance(node, ast.FunctionDef):
            if node.decorator_list:
                raise CodeCheckError("forbidden", f"decorators are not allowed (on {node.name!r})", line)
            for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                if not _const_expr(default):
                    raise CodeCheckError(
                        "forbidden", f"default arguments of {node.name!r} must be simple constants", default.lineno
                    )
        elif isinstance(node, ast.Lambda):
            for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                if not _const_expr(default):
                    raise CodeCheckError("forbidden", "lambda default arguments must be simple constants", line)

    # Module level: imports, function definitions, constants, a docstring. Nothing that runs.
    contract: list[ast.FunctionDef] = []
    for stmt in tree.body:
        line = stmt.lineno
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(stmt, ast.FunctionDef):
            if stmt.name == CONTRACT:
                contract.append(stmt)
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            value = stmt.value
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if value is not None and _const_expr(value) and all(isinstance(t, ast.Name) for t in targets):
                continue
            raise CodeCheckError(
                "forbidden",
                "module-level assignments must bind a name to a simple constant "
                "(literals, arithmetic without '**', np.array([...]))",
                line,
            )
        if isinstance(stmt, ast.Pass):
            continue
        raise CodeCheckError(
            "forbidden",
            f"module-level {type(stmt).__name__} is not allowed (only imports, functions and constants)",
            line,
        )
    if not contract:
        raise CodeCheckError("contract", f"the program must define '{CONTRACT}(view, action)' at module level")
    if len(contract) > 1:
        raise CodeCheckError("contract", f"'{CONTRACT}' is defined {len(contract)} times", contract[1].lineno)
    fn = contract[0]
    args = fn.args
    positional = args.posonlyargs + args.args
    if len(positional) != 2 or args.vararg or args.kwarg or args.kwonlyargs or args.defaults:
        raise CodeCheckError(
            "contract", f"'{CONTRACT}' must take exactly two positional parameters (view, action)", fn.lineno
        )

    known = _bound_names(tree) | set(SAFE_BUILTIN_NAMES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in known:
            raise CodeCheckError(
                "unknown_name", f"name {node.id!r} is not defined (and is not an allowed builtin)", node.lineno
            )

    return _StripAnnotations().visit(tree)


class _StripAnnotations(ast.NodeTransformer):
    """Annotations are evaluated at definition time: drop them rather than allow-list type syntax."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.annotation = None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)


# --------------------------------------------------------------------------------------------------
# restricted namespace


def _noop_print(*args: Any, **kwargs: Any) -> None:
    """Programs may keep their debug prints; they go nowhere (a print per env step would flood logs)."""


def _build_builtins() -> dict[str, Any]:
    import builtins

    names = [
        "abs",
        "all",
        "any",
        "bool",
        "dict",
        "divmod",
        "enumerate",
        "filter",
        "float",
        "frozenset",
        "int",
        "isinstance",
        "iter",
        "len",
        "list",
        "map",
        "max",
        "min",
        "next",
        "pow",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "slice",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
        "chr",
        "ord",
        "hash",
        "bin",
        "hex",
        "oct",
        "complex",
        "ascii",
        "Exception",
        "ValueError",
        "ArithmeticError",
        "ZeroDivisionError",
        "FloatingPointError",
        "OverflowError",
        "TypeError",
        "IndexError",
        "KeyError",
        "LookupError",
        "RuntimeError",
        "AssertionError",
        "NotImplementedError",
        "StopIteration",
        "AttributeError",
        "NameError",
        "True",
        "False",
        "None",
        "NotImplemented",
        "Ellipsis",
    ]
    safe = {n: getattr(builtins, n) for n in names}
    safe["print"] = _noop_print
    return safe


SAFE_BUILTIN_NAMES: tuple[str, ...] = (*_build_builtins(), "__import__")

_NUMPY_SUBMODULES = ("linalg", "random", "fft", "emath", "polynomial")
_SAFE_NUMPY: types.ModuleType | None = None


def _filtered(module: types.ModuleType, name: str) -> types.ModuleType:
    proxy = types.ModuleType(name, getattr(module, "__doc__", None))
    for key, value in vars(module).items():
        if key.startswith("_") or key in FORBIDDEN_ATTRS or isinstance(value, types.ModuleType):
            continue
        setattr(proxy, key, value)
    return proxy


def safe_numpy() -> types.ModuleType:
    """numpy as programs see it: public names minus file/code/process-wide ones, a few submodules."""
    global _SAFE_NUMPY
    if _SAFE_NUMPY is None:
        import importlib

        import numpy

        proxy = _filtered(numpy, "numpy")
        for sub in _NUMPY_SUBMODULES:
            mod = getattr(numpy, sub, None)  # numpy.emath is an alias, not an importable module
            if not isinstance(mod, types.ModuleType):
                mod = importlib.import_module(f"numpy.{sub}")
            setattr(proxy, sub, _filtered(mod, f"numpy.{sub}"))
        _SAFE_NUMPY = proxy
    return _SAFE_NUMPY


def _safe_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    """The only `__import__` programs get: math, numpy and numpy's allowed submodules."""
    if isinstance(fromlist, list):
        # C code's PyImport_Import (e.g. `arr.mean()` fetching numpy._core._methods on first use)
        # looks up `__import__` in the *calling* frame's builtins, which are the program's, and
        # passes a list as fromlist. Import statements in a program pass None or a tuple, and
        # `__import__` itself is a forbidden name, so only library code gets here: let it import.
        import builtins

        module = sys.modules.get(name)
        return module if module is not None else builtins.__import__(name, globals, locals, fromlist, level)
    if level:
        raise ImportError("relative imports are not allowed")
    parts = name.split(".")
    if parts[0] == "math" and len(parts) == 1:
        return math
    if parts[0] == "numpy":
        np_ = safe_numpy()
        if len(parts) == 1:
            return np_
        if len(parts) == 2 and parts[1] in _NUMPY_SUBMODULES:
            # `import numpy.linalg` binds `numpy`; `from numpy.linalg import norm` needs the submodule.
            return getattr(np_, parts[1]) if fromlist else np_
    raise ImportError(f"import of {name!r} is not allowed (only math and numpy)")


def _freeze(value: Any) -> Any:
    """Module-level constants become read-only so a program cannot keep state between calls."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set):
        return frozenset(_freeze(v) for v in value)
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if type(value).__module__ == "numpy" and hasattr(value, "flags") and hasattr(value, "copy"):
        value = value.copy()
        value.flags.writeable = False
    return value


def compile_program(tree: ast.Module, filename: str) -> tuple[Callable[[Any, Any], Any], dict[str, Any]]:
    """Execute a checked tree in a fresh restricted namespace. Returns (compute_reward, namespace)."""
    builtins_ = _build_builtins()
    builtins_["__import__"] = _safe_import
    namespace: dict[str, Any] = {"__builtins__": builtins_, "__name__": "reward_program"}
    code = compile(ast.fix_missing_locations(tree), filename, "exec")
    try:
        exec(code, namespace)
    except Exception as exc:
        line = _program_line(exc.__traceback__, filename)
        raise CodeCheckError("load", f"loading the program failed: {type(exc).__name__}: {exc}", line) from None
    for key, value in list(namespace.items()):
        if key != "__builtins__" and not isinstance(value, (types.FunctionType, types.ModuleType)):
            namespace[key] = _freeze(value)
    return namespace[CONTRACT], namespace


def _program_line(tb: Any, filename: str) -> int | None:
    """Line of the innermost traceback frame inside the program (None when it never got there)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def describe_exception(exc: BaseException, filename: str) -> tuple[str, int | None]:
    """`TypeName: message` (truncated) and the program line where it was raised."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > 500:
        text = text[:500] + "..."
    return text, _program_line(exc.__traceback__, filename)


# --------------------------------------------------------------------------------------------------
# result checking (shared by the dry run and the fast path)


def as_float(value: Any) -> float | None:
    """A real scalar as float; None when `value` is not one (arrays of size 1 are accepted)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    size = getattr(value, "size", None)
    if size == 1 and getattr(value, "dtype", None) is not None and value.dtype.kind in "biuf":
        return float(value.reshape(-1)[0])
    return None


def split_result(result: Any) -> tuple[float, dict[str, float]]:
    """Check the contract's return value; raises CodeCheckError('output', ...) with what was wrong."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = f"a {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise CodeCheckError(
            "output", f"{CONTRACT} must return (reward: float, components: dict[str, float]), got {got}"
        )
    reward_raw, comps_raw = result
    reward = as_float(reward_raw)
    if reward is None:
        raise CodeCheckError("output", f"the reward must be a real scalar, got {type(reward_raw).__name__}")
    if not isinstance(comps_raw, Mapping):
        raise CodeCheckError("output", f"components must be a dict of name -> float, got {type(comps_raw).__name__}")
    if len(comps_raw) > MAX_COMPONENTS:
        raise CodeCheckError("output", f"{len(comps_raw)} components; at most {MAX_COMPONENTS} are allowed")
    comps: dict[str, float] = {}
    for key, value in comps_raw.items():
        if not isinstance(key, str) or not key or len(key) > MAX_NAME_LEN:
            raise CodeCheckError("output", f"component names must be non-empty strings of at most {MAX_NAME_LEN} chars")
        v = as_float(value)
        if v is None:
            raise CodeCheckError("output", f"component {key!r} must be a real scalar, got {type(value).__name__}")
        comps[key] = v
    return reward, comps


# --------------------------------------------------------------------------------------------------
# sandbox child (runs in a separate process; see embodied.rewards.code.dry_run)


class DictView:
    """Attribute access over a dict of arrays: the child's stand-in for `embodied.tasks.views.View`."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"no view named {name!r}; views: {sorted(self._data)}") from None

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __dir__(self) -> list[str]:
        return sorted(self._data)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)


_DENY_AFTER_SETUP = True


def _isolate_network() -> str:
    """Cut the network: a fresh network namespace (only a down loopback) when the kernel allows."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        clone_newnet, clone_newuser = 0x40000000, 0x10000000
        if libc.unshare(clone_newnet) == 0:
            return "network namespace"
        if libc.unshare(clone_newuser | clone_newnet) == 0:
            return "user+network namespace"
    except Exception:
        pass
    return "audit hook only"


def _warm_numpy() -> None:
    """Run common numpy functions once before the audit hook goes up: some import modules lazily
    (numpy.ma, inspect, ...) or fill C-level caches on first use, which the hook would deny."""
    import numpy as np
    import numpy.ma

    x = np.arange(3.0)
    m = np.eye(3) + 0.1
    for fn in (
        lambda: (x.mean(), x.std(), x.var(), x.sum(), x.min(), x.max(), x.prod(), x.any(), x.all(), x.round(1)),
        lambda: (np.quantile(x, 0.5), np.percentile(x, 90), np.median(x), np.nanmean(x), np.average(x, weights=x + 1)),
        lambda: (np.histogram(x, bins=3), np.unique(x), np.cov(x), np.corrcoef(x, x + 1), np.gradient(x)),
        lambda: (np.linalg.norm(x), np.linalg.inv(m), np.linalg.svd(m), np.linalg.eigvalsh(m), np.linalg.det(m)),
        lambda: (np.linalg.lstsq(m, x, rcond=None), np.linalg.solve(m, x), np.fft.rfft(x), np.interp(0.5, x, x)),
        lambda: (np.polynomial.Polynomial([1.0, 2.0])(1.0), np.random.default_rng(0).normal(), np.convolve(x, x)),
        lambda: (np.clip(x, 0, 1), np.isclose(x, x), np.allclose(x, x), np.array_equal(x, x), np.pad(x, 1)),
        lambda: (np.trapezoid(x), np.cross(x, x + 1), np.einsum("i,i->", x, x), np.meshgrid(x, x), np.tile(x, 2)),
        lambda: (float(np.float64(1.5)), np.float32(1.0) * 2, np.asarray([1, 2], dtype=np.int64).astype(float)),
    ):
        try:
            fn()
        except Exception:
            pass


def child_main() -> None:
    """Entry point of the sandbox child. Protocol: a pickled request on stdin (from our own parent
    process, so trusted), one JSON line on stdout (parsed by the parent with a size cap)."""
    import json
    import os
    import pickle
    import resource
    import time
    import warnings

    raw = sys.stdin.buffer.read()
    request = pickle.loads(raw)
    limits = request["limits"]

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    cpu = math.ceil(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file may grow, whatever else fails
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no fork (ignored for root; the hook covers it)
    except (ValueError, OSError):
        pass
    network = _isolate_network()

    import numpy  # noqa: F401 - loaded before the memory cap and the import ban

    warnings.simplefilter("ignore")  # warning display opens source files; outputs are checked anyway
    safe_numpy()
    _warm_numpy()
    # Modules a program should never reach become unimportable (None in sys.modules).
    for mod in (
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "subprocess",
        "_posixsubprocess",
        "ctypes",
        "_ctypes",
        "select",
        "mmap",
        "pty",
        "multiprocessing",
        "_multiprocessing",
        "urllib",
        "http",
        "shutil",
    ):
        sys.modules[mod] = None  # type: ignore[assignment]

    with open("/proc/self/statm") as fh:
        vm_bytes = int(fh.read().split()[0]) * resource.getpagesize()
    cap = vm_bytes + int(limits["memory_mb"]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    filename = request["filename"]
    try:
        if request.get("unsafe_skip_static_checks"):
            # Tests only: prove the process-level layer alone contains a program that got past
            # the static checks and the restricted builtins.
            namespace: dict[str, Any] = {"__name__": "reward_program"}
            exec(compile(request["source"], filename, "exec"), namespace)
            fn = namespace[CONTRACT]
        else:
            tree = check_source(request["source"])
            fn, _ = compile_program(tree, filename)
    except CodeCheckError as exc:
        reply({"ok": False, "kind": exc.kind, "message": exc.reason, "line": exc.line, "network": network})
        return

    denied: list[str] = []

    inside = [False]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        # While the program runs it has no business raising any audit event (file, socket,
        # process, import, ctypes, frame access...). Deny them all and remember the first one.
        # Outside its calls our own code may (e.g. reading a traceback's frames).
        if not inside[0]:
            return
        if not denied:
            denied.append(event)
        raise PermissionError(f"sandbox: {event!r} is not allowed")

    views = [DictView(v) for v, _ in request["samples"]]
    actions = [a for _, a in request["samples"]]
    rewards: list[float] = []
    components: list[dict[str, float]] = []
    times: list[float] = []
    perf = time.perf_counter
    sys.setrecursionlimit(400)
    sys.addaudithook(hook)
    for i, (view, action) in enumerate(zip(views, actions, strict=True)):
        try:
            inside[0] = True
            t0 = perf()
            try:
                result = fn(view, action)
            finally:
                t1 = perf()
                inside[0] = False
            times.append(t1 - t0)
            reward, comps = split_result(result)
        except CodeCheckError as exc:
            reply(
                {
                    "ok": False,
                    "kind": exc.kind,
                    "message": f"sample {i}: {exc.reason}",
                    "line": None,
                    "network": network,
                }
            )
            return
        except MemoryError:
            reply(
                {
                    "ok": False,
                    "kind": "memory",
                    "message": f"sample {i}: memory limit exceeded ({limits['memory_mb']} MiB)",
                    "line": None,
                    "network": network,
                }
            )
            return
        except RecursionError as exc:
            _, line = describe_exception(exc, filename)
            reply(
                {
                    "ok": False,
                    "kind": "recursion",
                    "message": f"sample {i}: recursion too deep",
                    "line": line,
                    "network": network,
                }
            )
            return
        except Exception as exc:
            text, line = describe_exception(exc, filename)
            kind = "sandbox" if denied else "runtime"
            if denied:
                text = f"the sandbox denied {denied[0]!r} ({text})"
            reply({"ok": False, "kind": kind, "message": f"sample {i}: {text}", "line": line, "network": network})
            return
        if denied:  # the program caught our PermissionError and carried on
            reply(
                {
                    "ok": False,
                    "kind": "sandbox",
                    "message": f"sample {i}: the sandbox denied {denied[0]!r}",
                    "line": None,
                    "network": network,
                }
            )
            return
        rewards.append(reward)
        components.append(comps)
    reply(
        {
            "ok": True,
            "rewards": rewards,
            "components": components,
            "times": times,
            "network": network,
            "denied": denied[:1],
        }
    )
    os._exit(0)  # skip interpreter teardown: nothing of the program's may run after the reply
