"""The import graph of the package: no loops, at most 10 floors, no library module imports a
command-line module, the wings keep to their floors (``spiking/`` imports nothing of ours outside
it). Imports inside functions count (a lazy import is still a dependency).

    python tests/test_structure.py      # prints the floors, lowest first
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fsvae_sj"
# The command-line layer and the commands on it (read from ``_cli.COMMANDS``, the one list of them);
# everything else is library.


def _commands() -> dict[str, str]:
    for node in ast.parse((PACKAGE / "_cli.py").read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["COMMANDS"]:
            return ast.literal_eval(node.value)
    raise LookupError("fsvae_sj/_cli.py has no COMMANDS")


CLI = {"fsvae_sj._cli", *_commands().values()}
MAX_FLOORS = 10
# The base modules beside the wings: any module may import them; they import only each other.
BASE = {"fsvae_sj.errors", "fsvae_sj.files", "fsvae_sj.seeding"}
# Old addresses kept for users (``from fsvae_sj.neurons import LIF``): modules that only re-export.
# A shim is no floor of its own: it stands on the floor of what it re-exports.
SHIMS = {"fsvae_sj.neurons", "fsvae_sj.surrogate", "fsvae_sj.tdbn", "fsvae_sj.layers", "fsvae_sj.backend"}


def module_name(path: Path) -> str:
    parts = ["fsvae_sj", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files}
                deps |= subs if len(subs) == len(node.names) else subs | {base}   # names from base itself
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Floor 0: imports nothing of ours; else one above the highest module it imports. Raises
    ValueError naming a loop."""
    floor, visiting = {}, []

    def visit(m):
        if m in floor:
            return floor[m]
        if m in visiting:
            raise ValueError("import loop: " + " -> ".join(visiting[visiting.index(m):] + [m]))
        visiting.append(m)
        floor[m] = (0 if m in SHIMS else 1) + max((visit(d) for d in graph[m]), default=-1)
        visiting.pop()
        return floor[m]
    for m in sorted(graph):
        visit(m)
    return floor


def test_no_import_loops_and_at_most_ten_floors():
    f = floors(import_graph())
    assert max(f.values()) + 1 <= MAX_FLOORS, drawing(f)


def test_no_library_module_imports_a_command_line_module():
    graph = import_graph()
    assert CLI <= set(graph), sorted(CLI - set(graph))   # the list above names real modules
    wrong = {m: sorted(graph[m] & CLI) for m in graph if m not in CLI and graph[m] & CLI}
    assert not wrong, wrong


def test_shims_only_re_export():
    """A shim holds a docstring, imports from the package and ``__all__``: no code hides in one."""
    for name in SHIMS:
        tree = ast.parse((PACKAGE / f"{name.removeprefix('fsvae_sj.')}.py").read_text())
        for node in tree.body:
            doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            reexport = isinstance(node, ast.ImportFrom) and node.level == 1
            names = isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
            assert doc or reexport or names, f"{name}: line {node.lineno} is not a re-export"


def test_the_base_modules_import_only_each_other():
    graph = import_graph()
    wrong = {m: sorted(graph[m] - BASE) for m in BASE if graph[m] - BASE}
    assert BASE <= set(graph) and not wrong, wrong


def test_spiking_imports_nothing_above_it():
    """The spiking wing (neuron, surrogate, tdBN, layers) stands on torch, SpikingJelly and the base
    modules alone."""
    graph = import_graph()
    wing = {m for m in graph if m.startswith("fsvae_sj.spiking")}
    assert "fsvae_sj.spiking.equations" in wing
    wrong = {m: sorted(graph[m] - wing - BASE) for m in wing if graph[m] - wing - BASE}
    assert not wrong, wrong


def test_every_package_ships_in_the_wheel():
    """setup.cfg lists packages by hand: a new wing missing there would be missing from the wheel."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(PACKAGE.parent / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, sorted(packages - listed)


def test_no_module_of_ours_imports_an_old_address():
    """The shims serve users; the package imports each thing from its home."""
    wrong = {m: sorted(deps & SHIMS) for m, deps in import_graph().items() if deps & SHIMS}
    assert not wrong, wrong


def test_nothing_imports_the_package_facade():
    """``fsvae_sj/__init__.py`` re-exports; a module importing it would sit above everything."""
    assert not [m for m, deps in import_graph().items() if "fsvae_sj" in deps]


def drawing(f: dict[str, int]) -> str:
    graph = import_graph()
    lines = []
    for level in range(max(f.values()) + 1):
        mods = sorted(m for m in f if f[m] == level)
        lines.append(f"floor {level}: " + ", ".join(
            m.removeprefix("fsvae_sj.") + (" [cli]" if m in CLI else " [shim]" if m in SHIMS else "") for m in mods))
    lines.append(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, no loop")
    return "\n".join(lines)


if __name__ == "__main__":
    print(drawing(floors(import_graph())))
