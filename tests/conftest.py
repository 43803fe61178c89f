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
