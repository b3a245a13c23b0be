"""The walls between the apps, read from the source (imports at any depth, inside functions too):
the domain imports Django and the plain helpers only; the storefront and the back office do not
import each other; only the Stripe side imports `stripe`; nothing of the site imports the
emulator but the demo launcher; and the emulator's modules import one another without a cycle."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ("config", "bookings", "payments", "shop", "merchant", "common")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, fully qualified (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join([*base, node.module] if node.module else base)
            names = [f"{stem}.{alias.name}" for alias in node.names]
            # `from . import payments` imports the submodule, not the package's own code.
            submodules = [name for name in names if is_module(name)]
            found.update(submodules if len(submodules) == len(names) else [stem, *names])
    return found


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def files_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


def crossings(package: str, forbidden: set[str], *, except_files: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files_of(package)
        if str(path.relative_to(ROOT)) not in except_files
        for name in sorted(imports_of(path))
        if top(name) in forbidden
    ]


def test_common_imports_nothing_of_the_site():
    assert crossings("common", {*SITE, "stripe", "stripe_emulator"} - {"common"}) == []


def test_the_domain_imports_no_app_above_it_and_no_stripe():
    assert crossings("bookings", {*SITE, "stripe", "stripe_emulator"} - {"bookings", "common"}) == []


def test_the_storefront_and_the_back_office_do_not_import_each_other():
    assert crossings("shop", {"merchant"}) == []
    assert crossings("merchant", {"shop"}) == []


def test_the_stripe_side_serves_the_storefront_and_the_back_office_without_importing_them():
    assert crossings("payments", {"shop", "merchant", "config"}) == []


def test_only_the_stripe_side_imports_stripe():
    for package in set(SITE) - {"payments"}:
        assert crossings(package, {"stripe"}) == [], package


def test_nothing_of_the_site_imports_the_emulator_but_the_demo_launcher():
    launcher = ("shop/demo.py", "shop/management/commands/demo.py")
    for package in SITE:
        assert crossings(package, {"stripe_emulator"}, except_files=launcher) == [], package


def cycles(package: str) -> list[list[str]]:
    modules = {module_name(path): path for path in files_of(package)}
    graph = {
        name: sorted({m for m in imports_of(path) if m in modules and m != name})
        for name, path in modules.items()
    }
    found, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in graph[name]:
            if state.get(target) == "open":
                found.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


def test_the_emulator_has_no_import_cycle():
    assert cycles("stripe_emulator") == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The test above can fail: two modules importing each other are reported."""
    package = tmp_path / "looped"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from .b import g\n")
    (package / "b.py").write_text("from looped.a import f\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert cycles("looped") == [["looped.a", "looped.b", "looped.a"]]
