"""The fixtures every test shares: a hermetic flat package index, a uv cache of the session's
own, and projects that use the launcher as a user would (a copy named `appenv`, symlinks)."""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import wheels

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "appenv.py")


def find_uv():
    """uv from the dev group (the `uv` package) when it is installed, else uv on PATH."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    return find_uv_bin()


UV = find_uv()
PYTHON = os.path.realpath(sys.executable)


def uv_version():
    out = subprocess.run([UV, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


@pytest.fixture(scope="session")
def index(tmp_path_factory):
    """A folder of wheels used as the only package index: tools, libraries, several versions."""
    directory = tmp_path_factory.mktemp("index")
    for version in ("1.0", "2.0"):
        wheels.library_wheel(directory, "lib-b", version)
    wheels.tool_wheel(directory, "tool-a", "1.0", late="lib_b")
    wheels.tool_wheel(directory, "tool-a", "2.0", requires=["lib-b>=2"], late="lib_b")
    wheels.tool_wheel(directory, "tool-a", "1.5", requires=["lib-b"], late="lib_b")
    wheels.tool_wheel(directory, "tool-c", "1.0")
    wheels.tool_wheel(directory, "tool-e", "1.0", requires=["lib-b==1.0"], late="lib_b")
    wheels.library_wheel(directory, "lib-d", "1.0")
    wheels.write_wheel(directory, "win-only", "1.0", {"win_only.py": ""}, tag="py3-none-win_amd64")
    wheels.tool_wheel(directory, "two-tools", "1.0", scripts=["tool-x", "tool-y"])
    program = tmp_path_factory.mktemp("program") / "file-tool"  # a program, as ruff ships its
    # binary; on stderr, the signals it started with ignored (SigIgn: bit N-1 for signal N)
    program.write_text("#!/bin/sh\necho file-tool ran\ngrep '^SigIgn' /proc/self/status >&2\n")
    wheels.binary_wheel(directory, "file-tool", "1.0", str(program), tag="py3-none-any")
    # What appenv itself installs on demand: its libraries, and uv (for the bootstrap tests).
    wheels.installed_wheel(directory, "packaging")
    wheels.installed_wheel(directory, "tomli")
    tag = "py3-none-" + sysconfig.get_platform().replace("-", "_").replace(".", "_")
    wheels.binary_wheel(directory, "uv", uv_version(), UV, tag=tag)
    return directory


@pytest.fixture(scope="session")
def base_env(tmp_path_factory, index):
    """The environment every launch gets: nothing from the developer's own setup leaks in."""
    home = tmp_path_factory.mktemp("session")
    bindir = home / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(PYTHON)
    (bindir / "uv").symlink_to(UV)
    env = {
        "PATH": "{}:/usr/bin:/bin".format(bindir),
        "HOME": str(home / "home"),
        "LANG": "C.UTF-8",
        "UV_CACHE_DIR": str(home / "uv-cache"),
        "UV_FIND_LINKS": str(index),
        "UV_DEFAULT_INDEX": (home / "no-index").as_uri(),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON": PYTHON,
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(index),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    (home / "no-index").mkdir()  # empty: `uv lock` skips it, and `uv add` needs it to exist
    return env


@pytest.fixture(scope="session")
def appenv_libraries(base_env, index):
    """appenv's own libraries already in its cache (XDG_CACHE_HOME/appenv/lib/pyX.Y), for tests
    that take the fixture's index away from uv and so from appenv's on-demand install."""
    target = os.path.join(base_env["XDG_CACHE_HOME"], "appenv", "lib",
                          "py{}.{}".format(*sys.version_info[:2]))
    if not os.path.isdir(target):
        names = ["packaging"] + (["tomli"] if sys.version_info < (3, 11) else [])
        subprocess.run([UV, "pip", "install", "--quiet", "--python", PYTHON, "--target", target,
                        "--no-index", "--find-links", str(index)] + names,
                       env=base_env, check=True)
    return target


class Project:
    """A project directory with the launcher copied in as `appenv`, used through subprocesses."""

    def __init__(self, root, env):
        self.root = root
        self.env = dict(env)

    @property
    def appenv(self):
        return str(self.root / "appenv")

    def write(self, name, text):
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def pyproject(self, dependencies=("tool-a==1.0",), extra="", name="demo"):
        deps = "".join('    "{}",\n'.format(d) for d in dependencies)
        self.write("pyproject.toml", '[project]\nname = "{}"\nversion = "0.1"\n'
                   'requires-python = ">=3.8"\ndependencies = [\n{}]\n{}'.format(
                       name, deps, textwrap.dedent(extra)))

    def lock(self, *options):
        result = subprocess.run([UV, "lock", "--project", str(self.root)] + list(options),
                                env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return (self.root / "uv.lock").read_text()

    def link(self, name, target="appenv", where=None):
        path = (where or self.root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        return path

    def run(self, argv, cwd=None, env=None, check=None, timeout=300, **kwargs):
        """Run a command the way a shell would (through its #! line), capturing its output."""
        environ = dict(self.env, **(env or {}))
        environ = {k: v for k, v in environ.items() if v is not None}
        result = subprocess.run([str(a) for a in argv], cwd=str(cwd or self.root), env=environ,
                                capture_output=True, text=True, timeout=timeout, **kwargs)
        if check is not None:
            assert result.returncode == check, (result.returncode, result.stdout, result.stderr)
        return result

    def cmd(self, *args, **kwargs):
        return self.run([self.appenv] + list(args), **kwargs)

    def refused(self, argv, status, *words, **kwargs):
        """Run ARGV, expecting exit STATUS, WORDS on stderr, and every file as it was."""
        before = listing(self.root)
        result = self.run(argv, **kwargs)
        assert result.returncode == status, (result.returncode, result.stderr)
        for word in words:
            assert word in result.stderr
        assert result.stdout == "" and "Traceback" not in result.stderr
        assert listing(self.root) == before
        return result

    def clone(self, name):
        """A fresh clone beside this project: its files without its environments."""
        root = self.root.parent / name
        shutil.copytree(str(self.root), str(root), symlinks=True,
                        ignore=shutil.ignore_patterns(".appenv", ".venv"))
        return type(self)(root, self.env)

    def environments(self):
        envs = self.root / ".appenv" / "envs"
        return sorted(p.name for p in envs.iterdir() if not p.name.startswith(".")) \
            if envs.exists() else []

    def current(self):
        return (self.root / ".appenv" / "current").resolve()

    def site_packages(self, env=None):
        env = env or self.current()
        return next((env / "lib").glob("python*/site-packages"))

    def installed(self, env=None):
        """The distributions in an environment, as name -> version."""
        found = {}
        for info in self.site_packages(env).glob("*.dist-info"):
            name, version = info.name[: -len(".dist-info")].rsplit("-", 1)
            found[name.replace("_", "-")] = version
        return found


@pytest.fixture
def project_factory(tmp_path, base_env):
    def make(name="project", dependencies=("tool-a==1.0",), links=("tool-a",), lock=True,
             extra=""):
        root = tmp_path / name
        root.mkdir(parents=True)
        shutil.copy(LAUNCHER, root / "appenv")
        project = Project(root, base_env)
        project.pyproject(dependencies, extra)
        for link in links:
            project.link(link)
        if lock:
            project.lock()
        return project

    return make


@pytest.fixture
def bare_factory(tmp_path, base_env):
    """A directory with only the launcher in it, as `appenv`: where a user runs init."""
    def make(name="new", launcher=True):
        root = tmp_path / name
        root.mkdir(parents=True)
        if launcher:
            shutil.copy(LAUNCHER, root / "appenv")
        return Project(root, base_env)

    return make


def listing(root):
    """Every path under ROOT with its content (file bytes, or a link's target): a snapshot."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
        else:
            found[str(path.relative_to(root))] = "dir"
    return found


@pytest.fixture
def project(project_factory):
    """A locked project that depends on tool-a 1.0, with ./tool-a linked to the launcher."""
    return project_factory()


# A user's machine, beside the session's: the fixtures above put packaging and tomli in
# UV_FIND_LINKS and python3 straight on PATH; these make the conditions users have.


def write_simple_index(root, wheels):
    """WHEELS (files under ROOT) as a PEP 503 index at ROOT, for file:// or HTTP."""
    for wheel in wheels:
        name = wheel.name.split("-")[0].replace("_", "-").lower()
        page = root / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        with open(str(page), "a") as f:
            f.write('<a href="{}">{}</a>\n'.format(
                os.path.relpath(str(wheel), str(page.parent)), wheel.name))
    return root


@pytest.fixture
def user_index(tmp_path, index):
    """The index of a user's own uv and pip configuration: the session's wheels, packaging,
    tomli and uv among them, as a simple index in a folder."""
    root = tmp_path / "user-index"
    (root / "files").mkdir(parents=True)
    for wheel in index.glob("*.whl"):
        shutil.copy(str(wheel), str(root / "files"))
    return write_simple_index(root, sorted((root / "files").glob("*.whl")))


def fresh_home(tmp_path, url, name="fresh-home"):
    """The variables of a user on a new machine: an empty home (no ~/.cache/appenv) whose
    uv.toml and pip.conf name URL as the index, and none of the session's find-links."""
    home = tmp_path / name
    (home / ".config" / "uv").mkdir(parents=True)
    (home / ".config" / "uv" / "uv.toml").write_text(
        '[[index]]\nurl = "{}"\ndefault = true\n'.format(url))
    (home / ".config" / "pip").mkdir()
    (home / ".config" / "pip" / "pip.conf").write_text("[global]\nindex-url = {}\n".format(url))
    return {"HOME": str(home), "XDG_CACHE_HOME": None, "XDG_CONFIG_HOME": None,
            "XDG_DATA_HOME": None, "UV_FIND_LINKS": None, "UV_DEFAULT_INDEX": None,
            "PIP_NO_INDEX": None, "PIP_FIND_LINKS": None, "PIP_CONFIG_FILE": None}


def python_bin(directory, **interpreters):
    """A directory for PATH with uv and the named interpreters (python3=..., python3_11=...)."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "uv").exists():
        (directory / "uv").symlink_to(UV)
    for name, target in interpreters.items():
        (directory / name.replace("_", ".")).symlink_to(target)
    return directory


@pytest.fixture
def own_index_project(project_factory, index, tmp_path):
    """A project whose only index is its own folder of wheels (an air-gapped deploy, a
    company's mirror): tools and their libraries, no packaging, no tomli, no uv. Not locked."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for pattern in ("tool_*.whl", "lib_*.whl"):
        for wheel in index.glob(pattern):
            shutil.copy(str(wheel), str(wheels))

    def make(name="project"):
        return project_factory(name, lock=False, extra=OWN_INDEX.format(wheels.as_uri()))

    make.wheels = wheels
    return make


OWN_INDEX = """
[[tool.uv.index]]
name = "wheels"
url = "{}"
format = "flat"
default = true
"""
