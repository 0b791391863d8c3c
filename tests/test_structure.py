"""The import graph of the package: no loops (package edges included), the wings stand on each
other in at most :data:`MAX_FLOORS` floors, no library module imports the command layer, the wings
keep to their floors (``spiking/`` and ``hub/`` import nothing of ours outside them but the base
modules; ``models/`` stands on those alone). Imports inside functions count (a lazy import is
still a dependency).

    python tests/test_structure.py      # prints the floors, lowest first
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fsvae_sj"


def _commands() -> dict[str, str]:
    """``fsvae_sj.cli.COMMANDS``, the one list of the commands, read without importing anything."""
    for node in ast.parse((PACKAGE / "cli" / "__init__.py").read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["COMMANDS"]:
            return ast.literal_eval(node.value)
    raise LookupError("fsvae_sj/cli/__init__.py has no COMMANDS")


# The modules ``python -m fsvae_sj.<tool>`` runs: two-line entries that call into cli/.
ENTRIES = {f"fsvae_sj.{n}.__main__" if (PACKAGE / n).is_dir() else f"fsvae_sj.{n}" for n in _commands()}
# The command layer: the cli/ wing and the entries; everything else is library.
CLI = {*ENTRIES, *(f"fsvae_sj.cli.{p.stem}" for p in (PACKAGE / "cli").glob("*.py") if p.stem != "__init__"),
       "fsvae_sj.cli"}
MAX_FLOORS = 8
# The base modules beside the wings: any module may import them; they import only each other.
BASE = {"fsvae_sj.errors", "fsvae_sj.files", "fsvae_sj.locks", "fsvae_sj.seeding"}
# Old addresses kept for users (``from fsvae_sj.neurons import LIF``): modules that only re-export.
# A shim (and an entry) is no floor of its own: it stands on the floor of what it re-exports.
SHIMS = {"fsvae_sj.neurons", "fsvae_sj.surrogate", "fsvae_sj.tdbn", "fsvae_sj.layers", "fsvae_sj.backend",
         "fsvae_sj.model", "fsvae_sj.bernoulli", "fsvae_sj.ann", "fsvae_sj.config", "fsvae_sj.losses",
         "fsvae_sj.pretrained", "fsvae_sj.checkpoint", "fsvae_sj.authors", "fsvae_sj.publish"}


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
        deps = {d for d in deps if d in files}
        # Importing fsvae_sj.a.b first runs fsvae_sj/a/__init__.py: an edge to the package, unless the
        # importer is inside it (the facade fsvae_sj itself aside: every import runs it, by design).
        deps |= {p for d in deps for p in _packages_above(d) if not (name + ".").startswith(p + ".")}
        graph[name] = deps - {name}
    return graph


def _packages_above(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def wing(module: str) -> str:
    """The unit a floor holds: the command layer (cli/ and the entries) is one wing, each package
    below fsvae_sj another, each top-level module its own."""
    if module in CLI:
        return "fsvae_sj.cli"
    return ".".join(module.split(".")[:2])


def wings(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between wings (a shim stays a node of its own: it has no floor)."""
    unit = {m: m if m in SHIMS else wing(m) for m in graph}
    out = {u: set() for u in unit.values()}
    for m, deps in graph.items():
        out[unit[m]] |= {unit[d] for d in deps} - {unit[m]}
    return out


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Floor 0: imports nothing of ours; else one above the highest it imports (a shim stands on
    the floor of what it re-exports). Raises ValueError naming a loop."""
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


def test_no_import_loops_between_modules():
    """Package edges included: importing fsvae_sj.a.b runs fsvae_sj/a/__init__.py."""
    floors(import_graph())


def test_no_import_runs_back_up_and_at_most_eight_floors():
    """The wings stand on each other without a loop (a wing importing one that imports it back is
    one, even through different modules), in at most :data:`MAX_FLOORS` floors."""
    f = floors(wings(import_graph()))
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


def test_entries_only_call_into_the_command_layer():
    """``fsvae_sj/<tool>.py`` holds a docstring, one import from ``cli/``, ``__all__`` and the
    ``if __name__ == "__main__"`` call: the command itself lives in cli/."""
    for name in ENTRIES:
        path = PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py")
        for node in ast.parse(path.read_text()).body:
            doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            call = isinstance(node, ast.ImportFrom) and node.level and (node.module or "").startswith("cli.")
            names = isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
            main = isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
            assert doc or call or names or main, f"{name}: line {node.lineno} is more than an entry"


def test_a_wing_importing_one_that_imports_it_back_is_a_loop():
    """Through different modules: a.x -> b.y -> a.z has no module loop but runs back up between wings."""
    graph = {"fsvae_sj.a.x": {"fsvae_sj.b.y"}, "fsvae_sj.b.y": {"fsvae_sj.a.z"}, "fsvae_sj.a.z": set()}
    floors(graph)
    try:
        floors(wings(graph))
    except ValueError as e:
        assert "fsvae_sj.a -> fsvae_sj.b -> fsvae_sj.a" in str(e)
    else:
        raise AssertionError("no loop found")


def test_an_import_of_a_submodule_runs_its_package():
    """The package edge: a package whose ``__init__`` imports a module that imports a submodule of
    the package back is a loop, though no file names the package itself."""
    graph = import_graph()
    assert "fsvae_sj.spiking" in graph["fsvae_sj.calibration"]   # it imports fsvae_sj.spiking.tdbn
    assert "fsvae_sj.spiking" not in graph["fsvae_sj.spiking.lif"]   # inside: the package is running


def test_the_base_modules_import_only_each_other():
    graph = import_graph()
    wrong = {m: sorted(graph[m] - BASE) for m in BASE if graph[m] - BASE}
    assert BASE <= set(graph) and not wrong, wrong


def imports_outside(wing: str, below: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """What each module of ``wing`` (a package) imports of ours outside it, the base modules and
    the wings ``below``; asserts that the wing exists."""
    graph = import_graph()
    inside = {m for m in graph if _within(m, (wing,))}
    assert wing in inside, wing
    allowed = inside | BASE | {m for m in graph if _within(m, below)}
    return {m: sorted(graph[m] - allowed) for m in inside if graph[m] - allowed}


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_spiking_imports_nothing_above_it():
    """The spiking wing (neuron, surrogate, tdBN, layers) stands on torch, SpikingJelly and the base
    modules alone."""
    wrong = imports_outside("fsvae_sj.spiking")
    assert not wrong, wrong


def test_the_hub_imports_only_the_base_modules():
    """The hub wing (entries, fetching, our checkpoint format, names and paths) needs no model
    class: ``from_pretrained`` imports it from below the models, with no callback."""
    wrong = imports_outside("fsvae_sj.hub")
    assert not wrong, wrong


def test_models_stand_on_the_spiking_wing_the_hub_and_the_base_alone():
    wrong = imports_outside("fsvae_sj.models", below=("fsvae_sj.spiking", "fsvae_sj.hub"))
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
        units = sorted(u for u in f if f[u] == level)
        lines.append(f"floor {level}: " + ", ".join(
            u.removeprefix("fsvae_sj.") + ("/" if u != "fsvae_sj" and any(m.startswith(u + ".") for m in graph) else "")
            + (" [shim]" if u in SHIMS else "") for u in units))
    lines.append(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, no loop")
    return "\n".join(lines)


if __name__ == "__main__":
    print(drawing(floors(wings(import_graph()))))
