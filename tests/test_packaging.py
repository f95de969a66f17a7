"""The wheel as a user installs it: built from the repository, installed into a fresh virtualenv,
and run from a directory that is not the repository.

One wheel is built per session (``pip wheel``, which needs setuptools from the package index or
pip's find-links). The virtualenv gets the wheel alone (``--no-deps``); a ``.pth`` file lends it
the running interpreter's site-packages for the dependencies, so nothing is downloaded, and the
repository itself is never on its path.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "replica-demo",
)  # fmt: skip
# Stage folders of the repository: a user's own package of one of these names must not be the
# one replica imports.
_SHADOWS = ("schemas", "recorder", "decoder", "replay")


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


class Installed:
    def __init__(self, wheel: Path, venv: Path) -> None:
        self.wheel = wheel
        self.python = venv / "bin" / "python"
        self.script = venv / "bin" / "replica"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("packaging")
    source, dist, venv = root / "source", root / "dist", root / "venv"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)  # the build writes build/ and egg-info
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("replica-*.whl")
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q")
    put = _run(*pip, "--no-index", wheel)
    assert put.returncode == 0, put.stderr
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    # Only site-packages directories, never the checkout itself. A .pth line only adds its
    # directory to the path: the editable install's own .pth inside it (CI's virtualenv lives in
    # the checkout) is not processed, so the lent directories cannot bring the source tree back.
    lent = [
        path
        for path in dict.fromkeys([sysconfig.get_path("purelib"), *sys.path])
        if path.endswith("-packages")
    ]
    Path(purelib.stdout.strip(), "lent_dependencies.pth").write_text("\n".join(lent) + "\n")
    return Installed(wheel, venv)


def test_the_wheel_installs_the_one_import_name_replica(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")] or [None]
        declared = top_level and wheel.read(top_level).decode().split()
    tops = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert tops == {"replica"}
    assert declared in (None, ["replica"])
    for packaged in (
        "replica/demo_feed.jsonl",
        "replica/__main__.py",
        "replica/commands/__init__.py",
        "replica/schemas/hyperliquid/replica/v1/replica.proto",
    ):
        assert packaged in names


def _imported_modules(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirement: str) -> list[str]:
    """A requirement's distribution and its extras: "dask[distributed]>=1" gives both names."""
    match = re.match(r"\s*([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?", requirement)
    assert match, requirement
    return [match[1], *(extra.strip() for extra in (match[2] or "").split(",") if extra.strip())]


def test_every_third_party_import_is_a_declared_dependency(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        requires = {
            _normal(name)
            for line in wheel.read(metadata).decode().splitlines()
            # report, serve --metrics and --cluster import what their extras declare, and say how
            # to install it; dask[distributed] declares the distributed package too
            if line.startswith("Requires-Dist:")
            and ("extra ==" not in line or re.search(r'extra == "(report|metrics|cluster)"', line))
            for name in _requirement_names(line.split(":", 1)[1])
        }
        imported = set()
        for name in wheel.namelist():
            if name.endswith(".py"):
                imported |= _imported_modules(wheel.read(name).decode())
    third_party = imported - set(sys.stdlib_module_names) - {"replica", "__future__"}
    providers = importlib.metadata.packages_distributions()
    undeclared = {
        module
        for module in third_party
        if not {_normal(d) for d in providers.get(module, [module])} & requires
    }
    assert "rich" in third_party
    assert not undeclared, f"imported but not in [project] dependencies: {sorted(undeclared)}"


def test_the_demo_runs_from_elsewhere_beside_a_users_own_schemas(
    installed: Installed, tmp_path: Path
) -> None:
    for name in _SHADOWS:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s {name}')\n")
    where = _run(
        installed.python,
        "-c",
        "import replica, replica.schemas.errors, replica.cli; "
        "print(replica.__file__); print(replica.schemas.errors.__file__)",
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    venv = installed.python.parent.parent
    assert all(Path(line).is_relative_to(venv) for line in where.stdout.splitlines())
    demo = _run(installed.python, "-m", "replica", "demo", "here", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "verify: 2 segments, 3000 commands, ok" in demo.stdout
    assert (tmp_path / "here" / "decoded").is_dir()


def test_every_command_answers_help(installed: Installed, tmp_path: Path) -> None:
    listed = _run(
        installed.python, "-c", "from replica.cli import cli; print(*cli.commands)", cwd=tmp_path
    )
    commands = listed.stdout.split()
    assert {"record", "replay", "serve", "decode", "sql", "demo", "import-node"} <= set(commands)
    for args in (["--help"], ["--version"], *([command, "--help"] for command in commands)):
        result = _run(installed.script, *args, cwd=tmp_path, timeout=120)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.startswith("Usage: replica" if "--help" in args else "replica")
