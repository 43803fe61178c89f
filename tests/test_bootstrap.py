"""Finding uv and appenv's libraries on a machine that has neither, and each CPython."""

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import threading

import pytest

from conftest import PYTHON, UV, fresh_home, python_bin, uv_version, write_simple_index


def pythons():
    """Every CPython 3.8+ that pyenv lists, and the one running the tests."""
    found = {PYTHON}
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        names = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True,
                               text=True).stdout.split()
    except OSError:
        return sorted(found)
    for name in names:
        parts = name.split(".")
        if len(parts) >= 2 and parts[0] == "3" and parts[1].isdigit() and int(parts[1]) >= 8:
            path = os.path.join(root, "versions", name, "bin", "python3")
            if os.path.exists(path):
                found.add(path)
    return sorted(found)


def path_without_uv(project, python=PYTHON):
    bindir = project.root.parent / "bin-no-uv"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "python3").exists():
        (bindir / "python3").symlink_to(python)
    return "{}:/usr/bin:/bin".format(bindir)


@pytest.mark.parametrize("python", pythons())
def test_launcher_on_each_cpython(project_factory, tmp_path, python):
    """The shell line runs `python3` from PATH: make it each interpreter in turn, with a fresh
    appenv cache, so the libraries it lacks (tomli before 3.11, packaging) come on demand."""
    project = project_factory()
    env = {"PATH": path_without_uv(project, python).replace(":/usr", ":{}:/usr".format(
        os.path.dirname(project.env["PATH"].split(":")[0]) + "/bin")),
        "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = json.loads(project.run(["./tool-a", "arg"], env=env, check=0).stdout)
    assert out["argv"][1:] == ["arg"] and out["version"] == "1.0"
    # a fresh clone: the plan recalled, the build path run from the cached bytecode
    fresh = project.clone("fresh")
    assert json.loads(fresh.run(["./tool-a"], env=env, check=0).stdout)["version"] == "1.0"
    assert fresh.run([fresh.root / ".appenv" / "current" / "bin" / "tool-a"], check=0).stdout
    assert project.cmd("--version", env=env, check=0).stdout.startswith("appenv ")
    # a symlink needs no packaging, and on 3.11+ (tomllib) nothing installed at all
    lib = tmp_path / "cache" / "appenv" / "lib"
    if minor_of(python) >= 11:
        assert not lib.exists()
    report = json.loads(project.cmd("status", "--json", env=env, check=0).stdout)
    assert report["lock"]["up_to_date"] and report["environment"]["state"] == "ready"
    project.pyproject(["tool-a==2.0"])
    assert "upgraded   tool-a 1.0 -> 2.0" in project.cmd("update-lockfile", env=env,
                                                         check=0).stderr
    # the summary's versions need packaging: never from or into the project's environment
    assert "packaging" not in project.installed()


def minor_of(python):
    out = subprocess.run([python, "-c", "import sys; print(sys.version_info[1])"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


@pytest.mark.parametrize("python", pythons())
def test_init_and_migrate_on_each_cpython(bare_factory, tmp_path, python):
    """The commands that read TOML and requirements, under each interpreter as `python3`,
    with appenv's libraries obtained on demand into a fresh cache."""
    new = bare_factory("new")
    env = {"PATH": path_without_uv(new, python).replace(":/usr", ":{}:/usr".format(
        os.path.dirname(new.env["PATH"].split(":")[0]) + "/bin")),
        "XDG_CACHE_HOME": str(tmp_path / "cache")}
    new.cmd("init", "--name", "demo", "--dep", "tool-a==1.5", "--binary", "tool-a", env=env,
            check=0)
    assert json.loads(new.run(["./tool-a"], env=env, check=0).stdout)["version"] == "1.5"
    classic = bare_factory("classic")
    classic.write("requirements.txt", "# appenv-python-preference: 3.8,3.9,3.10,3.11,3.12,3.13\n"
                  "tool-a\n")
    classic.write("requirements.lock", "tool-a==1.0\n")
    classic.link("tool-a")
    result = classic.cmd("migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(classic.run(["./tool-a"], env=env, check=0).stdout)["version"] == "1.0"


def test_uv_absent_is_installed_once_with_pip(project, tmp_path):
    env = {"PATH": path_without_uv(project), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = project.run(["./tool-a"], env=env, check=0)
    assert "installing uv" in result.stderr
    assert json.loads(result.stdout)["tool"] == "tool-a"
    assert "Running pip as the 'root' user" not in result.stderr  # helpers say nothing extra
    assert "A new release of pip" not in result.stderr
    installed = tmp_path / "cache" / "appenv" / "uv" / uv_version() / "bin" / "uv"
    assert installed.exists()
    project.pyproject(["tool-a==2.0"])
    result = project.cmd("update-lockfile", env=env, check=0)
    assert "installing uv" not in result.stderr  # the copy appenv installed before
    assert "upgraded" in result.stderr


def test_no_uv_and_none_installable_is_69(project, tmp_path, index):
    without_uv = tmp_path / "index"
    without_uv.mkdir()
    for wheel in index.glob("packaging-*.whl"):
        shutil.copy(wheel, without_uv)
    env = {"PATH": path_without_uv(project), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PIP_FIND_LINKS": str(without_uv)}
    result = project.run(["./tool-a"], env=env)
    assert result.returncode == 69
    assert "uv on PATH: not found" in result.stderr and "pip install uv" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    result = project.run(["./tool-a"], env=dict(env, UV_OFFLINE="1"))  # says why pip could not
    assert result.returncode == 69 and "UV_OFFLINE is set: pip looked in no index" in result.stderr


def test_appenv_uv_is_used_first(project, tmp_path):
    env = {"PATH": path_without_uv(project), "APPENV_UV": project.env["PATH"].split(":")[0]
           + "/uv", "APPENV_VERBOSE": "1"}
    result = project.run(["./tool-a"], env=env, check=0)
    assert "installing uv" not in result.stderr
    assert "running {}/uv sync".format(project.env["PATH"].split(":")[0]) in result.stderr
    env["APPENV_UV"] = str(tmp_path / "no-such-uv")
    result = project.cmd("update-lockfile", env=env)
    assert result.returncode == 69 and "APPENV_UV" in result.stderr


def test_a_remembered_uv_that_no_longer_starts_is_looked_for_again(project, tmp_path):
    """A build recalls the uv it found before. If that uv cannot be started any more (a
    wrapper whose interpreter is gone), appenv looks for uv again, as on a first build."""
    interpreter = tmp_path / "sh"
    interpreter.symlink_to("/bin/sh")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "uv"
    wrapper.write_text('#!{}\nexec "{}" "$@"\n'.format(interpreter, UV))
    wrapper.chmod(0o755)
    env = {"PATH": "{}:{}".format(bindir, path_without_uv(project)),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    project.run(["./tool-a"], env=env, check=0)  # the plan remembered, with the wrapper
    interpreter.unlink()
    result = project.clone("fresh").run(["./tool-a"], env=env)
    assert json.loads(result.stdout)["tool"] == "tool-a", result.stderr
    assert "installing uv" in result.stderr  # the wrapper on PATH does not run: passed over
    env["APPENV_UV"] = str(wrapper)  # the only uv allowed: it says so
    result = project.clone("explicit").run(["./tool-a"], env=env)
    assert result.returncode == 69 and "APPENV_UV={} is not a uv".format(wrapper) in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_old_uv_on_path_is_passed_over(project, tmp_path):
    bindir = tmp_path / "old"
    bindir.mkdir()
    old = bindir / "uv"
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'uv 0.1.0' && exit 0\nexit 2\n")
    old.chmod(0o755)
    (bindir / "python3").symlink_to(PYTHON)
    env = {"PATH": "{}:/usr/bin:/bin".format(bindir), "XDG_CACHE_HOME": str(tmp_path / "c")}
    result = project.run(["./tool-a"], env=env, check=0)
    assert "installing uv" in result.stderr


def test_required_version_is_respected(project_factory, tmp_path):
    project = project_factory(extra='[tool.uv]\nrequired-version = "<0.2"\n', lock=False)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = project.cmd("update-lockfile", env=env)
    assert result.returncode == 69
    assert "is not <0.2" in result.stderr or "<0.2" in result.stderr
    project.pyproject(extra='[tool.uv]\nrequired-version = ">={}"\n'.format(uv_version()))
    project.cmd("update-lockfile", env=env, check=0)


def test_uv_output_is_live_on_stderr_never_stdout(project):
    result = project.cmd("update-lockfile", "--upgrade")
    assert result.returncode == 0 and result.stdout == ""
    assert "Resolved" in result.stderr
    result = project.run(["./tool-a", "--exit", "0"])
    assert result.stdout == "" and "Installed" in result.stderr


# --- Real machines: the interpreter behind a shim or too old, the project's own index, offline


def pyenv_python(minor):
    """pyenv's CPython 3.MINOR, or None."""
    return next((p for p in pythons() + old_pythons() if "/3.{}.".format(minor) in p), None)


def old_pythons():
    """pyenv's CPython 3.6 and 3.7: RHEL 8's and Debian 10's python3."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        names = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True,
                               text=True).stdout.split()
    except OSError:
        return []
    return [os.path.join(root, "versions", n, "bin", "python3") for n in names
            if n.startswith(("3.6.", "3.7."))]


def memo(home):
    """The interpreters appenv remembers, PATH -> python."""
    lines = (home / ".cache" / "appenv" / "python").read_text().split("\n")
    return dict(zip(lines[0::2], lines[1::2]))


@pytest.mark.parametrize("python", pythons())
def test_a_project_whose_only_index_is_its_own_folder_on_a_fresh_machine(
        own_index_project, user_index, bare_factory, tmp_path, python):
    """The project's [[tool.uv.index]] (default = true) has no packaging or tomli; the user's
    own uv and pip configuration have them. appenv takes its libraries with the user's
    configuration, outside the project: every command works, from an empty home."""
    project = own_index_project()
    bindir = python_bin(tmp_path / "bin", python3=python)
    env = dict(fresh_home(tmp_path, user_index.as_uri()), PATH="{}:/usr/bin:/bin".format(bindir))
    result = project.cmd("update-lockfile", env=env, check=0)
    assert "added      tool-a 1.0" in result.stderr
    assert json.loads(project.run(["./tool-a"], env=env, check=0).stdout)["version"] == "1.0"
    clone = project.clone("clone")
    path = clone.cmd("prepare", env=env, check=0).stdout.strip()
    assert os.path.exists(os.path.join(path, "bin", "tool-a"))
    assert clone.cmd("python", "-c", "print('ok')", env=env, check=0).stdout == "ok\n"
    report = json.loads(clone.cmd("status", "--json", env=env, check=0).stdout)
    assert report["environment"]["state"] == "ready" and report["lock"]["up_to_date"]
    assert "packaging" not in project.installed() and "tomli" not in project.installed()
    # init and migrate in projects whose index is the same folder
    new = bare_factory("new")
    new.write("pyproject.toml", OWN_INDEX_ONLY.format(own_index_project.wheels.as_uri()))
    new.cmd("init", "--name", "demo", "--dep", "tool-a==1.5", "--binary", "tool-a", env=env,
            check=0)
    assert json.loads(new.run(["./tool-a"], env=env, check=0).stdout)["version"] == "1.5"
    tools = write_simple_index(own_index_project.wheels,
                               sorted(own_index_project.wheels.glob("*.whl")))
    classic = bare_factory("classic")
    classic.write("requirements.txt", "--index-url {}\ntool-a\n".format(tools.as_uri()))
    classic.write("requirements.lock", "tool-a==1.0\nlib-b==2.0\n")
    classic.link("tool-a")
    classic.cmd("migrate", env=env, check=0)
    assert json.loads(classic.run(["./tool-a"], env=env, check=0).stdout)["version"] == "1.0"


OWN_INDEX_ONLY = """\
[[tool.uv.index]]
name = "wheels"
url = "{}"
format = "flat"
default = true
"""


@contextlib.contextmanager
def served(directory):
    """DIRECTORY over HTTP on loopback, while the block runs: a company's mirror."""
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(directory), **k)
    handler.log_message = None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:{}/".format(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def locked_for_a_user_without_an_index(project, tmp_path, python):
    """PROJECT locked by uv, and the variables of a fresh home whose uv and pip configuration
    name an empty index, with python3 being PYTHON: only the project's folder has wheels."""
    bindir = python_bin(tmp_path / "bin", python3=python)
    empty = tmp_path / "empty-index"
    empty.mkdir()
    env = dict(fresh_home(tmp_path, empty.as_uri()), PATH="{}:/usr/bin:/bin".format(bindir))
    project.run([UV, "lock", "--project", str(project.root)], env=env, check=0)
    return project, env


@pytest.mark.parametrize("minor", [9, 11])
def test_status_installs_nothing_where_the_libraries_are_not_at_hand(own_index_project,
                                                                      tmp_path, minor):
    """A fresh home, and a Python that needs tomli (3.9) or not (3.11): status reports,
    with the lock checked by uv, and leaves tomli to the first command that needs it."""
    python = pyenv_python(minor) or PYTHON
    project, env = locked_for_a_user_without_an_index(own_index_project(), tmp_path, python)
    result = project.cmd("status", env=env, check=0)
    assert "installing" not in result.stderr
    assert not os.path.exists(os.path.join(env["HOME"], ".cache", "appenv", "lib"))
    assert "uv.lock:      present, up to date with pyproject.toml" in result.stdout
    needs_tomli = subprocess.run([python, "-c", "import tomllib"]).returncode != 0
    assert ("tomli is not at hand for Python 3.{}".format(minor) in result.stdout) == needs_tomli


def test_offline_the_libraries_come_from_uv_s_cache(own_index_project, user_index, tmp_path):
    """UV_OFFLINE=1 with uv's cache warm from an earlier install and an empty appenv cache:
    appenv's libraries come from uv's cache, the index being out of reach."""
    python = pyenv_python(9) or PYTHON  # one that needs both packaging and tomli
    project = own_index_project()
    bindir = python_bin(tmp_path / "bin", python3=python)
    with served(user_index) as url:
        env = dict(fresh_home(tmp_path, url), PATH="{}:/usr/bin:/bin".format(bindir),
                   UV_CACHE_DIR=str(tmp_path / "uv-cache"))
        project.cmd("update-lockfile", env=env, check=0)  # the libraries installed, uv caches
    shutil.rmtree(os.path.join(env["HOME"], ".cache", "appenv"))
    project.pyproject(["tool-a==1.5"], extra=project_index(project))
    result = project.cmd("update-lockfile", env=dict(env, UV_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
    assert "upgraded   tool-a 1.0 -> 1.5" in result.stderr


def test_offline_after_a_first_run_without_uv_the_libraries_are_in_uv_s_cache(
        own_index_project, user_index, tmp_path):
    """The first run had no uv: appenv installs uv before its libraries, so that they come
    through uv, into uv's cache, and an offline run without ~/.cache/appenv finds them."""
    python = pyenv_python(9) or PYTHON
    project = own_index_project()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(python)
    with served(user_index) as url:
        env = dict(fresh_home(tmp_path, url), PATH="{}:/usr/bin:/bin".format(bindir),
                   UV_CACHE_DIR=str(tmp_path / "uv-cache"), APPENV_UV=None)
        first = project.cmd("update-lockfile", env=env, check=0)
        assert "installing uv" in first.stderr
    shutil.rmtree(os.path.join(env["HOME"], ".cache", "appenv"))
    project.pyproject(["tool-a==1.5"], extra=project_index(project))
    result = project.cmd("update-lockfile", env=dict(env, UV_OFFLINE="1", APPENV_UV=UV))
    assert result.returncode == 0, result.stderr
    assert "upgraded   tool-a 1.0 -> 1.5" in result.stderr


def project_index(project):
    text = (project.root / "pyproject.toml").read_text()
    return text[text.index("[[tool.uv.index]]"):]


def test_without_a_source_of_libraries_the_error_says_each_and_the_fix(own_index_project,
                                                                      tmp_path):
    """The user's configuration has no index with packaging either: exit 69, each source
    tried, and the one command that fixes it for that interpreter."""
    python = pyenv_python(9) or PYTHON
    project = own_index_project()
    empty = tmp_path / "empty-index"
    empty.mkdir()
    bindir = python_bin(tmp_path / "bin", python3=python)
    env = dict(fresh_home(tmp_path, empty.as_uri()), PATH="{}:/usr/bin:/bin".format(bindir))
    result = project.refused([project.appenv, "update-lockfile"], 69, env=env)
    for source in ("this Python's site-packages", "appenv's cache", "uv's cache, offline",
                   "the indexes of your uv configuration", "the indexes of your pip configuration",
                   "the project's indexes", "-m pip install --target", "air-gapped"):
        assert source in result.stderr, source
    assert "Running pip as the 'root' user" not in result.stderr
    offline = project.refused([project.appenv, "update-lockfile"], 69,
                              env=dict(env, UV_OFFLINE="1"))
    assert ("the indexes of your pip configuration (UV_OFFLINE is set: pip looked in no index)"
            in offline.stderr)
    # no uv at hand, and none to be had: that is said too, and why the project's indexes
    # (a folder of wheels that may hold them) were not looked in
    alone = tmp_path / "python-only"
    alone.mkdir()
    (alone / "python3").symlink_to(python)
    result = project.refused([project.appenv, "update-lockfile"], 69, env=dict(
        env, PATH="{}:/usr/bin:/bin".format(alone), APPENV_UV=None))
    assert "pip install uv>=" in result.stderr
    assert "the project's indexes ({}/pyproject.toml): not tried: appenv reads them with " \
        "uv".format(project.root) in result.stderr


@pytest.mark.parametrize("kind", ["script", "pyenv"])
def test_python3_behind_a_shim_starts_only_when_looked_for(project, tmp_path, kind):
    """A version manager's shim as python3 (pyenv's own, or a script that execs the real
    interpreter): the first run passes through it and remembers the interpreter it reached;
    warm runs then start that one directly. A new PATH looks again."""
    env = {"XDG_CACHE_HOME": None, "HOME": str(tmp_path / "home")}
    bindir = python_bin(tmp_path / "bin")
    log = tmp_path / "shim.log"
    if kind == "pyenv":
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() \
            if shutil.which("pyenv") else ""
        shims = os.path.join(root, "shims")
        if not os.path.exists(os.path.join(shims, "python3")):
            pytest.skip("pyenv is not installed here")
        version = os.path.basename(os.path.dirname(os.path.dirname(PYTHON)))
        env.update(PYENV_VERSION=version, PATH="{}:{}:/usr/bin:/bin".format(shims, bindir))
        started = "{}/versions/{}/bin".format(root, version)  # what pyenv exec puts on PATH

        def shim_runs():
            return code_path(project, env).startswith(started)
    else:
        shims = tmp_path / "shims"
        shims.mkdir()
        (shims / "python3").write_text('#!/bin/sh\necho started >> "{}"\nexec "{}" "$@"\n'
                                       .format(log, PYTHON))
        (shims / "python3").chmod(0o755)
        env["PATH"] = "{}:{}:/usr/bin:/bin".format(shims, bindir)
        log.write_text("")

        def shim_runs():
            before = log.read_text().count("started")
            code_path(project, env)
            return log.read_text().count("started") > before
    assert shim_runs()  # the first run: the shim, then the interpreter remembered
    assert os.path.realpath(memo(tmp_path / "home")[env["PATH"]]) == PYTHON
    assert not shim_runs() and not shim_runs()
    json.loads(project.run(["./tool-a"], env=env, check=0).stdout)
    env["PATH"] += ":/sbin"  # another PATH: looked for once more
    assert shim_runs() and not shim_runs()


def code_path(project, env):
    """The PATH a binary gets: a shim that ran leaves its mark (pyenv exec prepends)."""
    return project.cmd("python", "-c", "import os; print(os.environ['PATH'])", env=env,
                       check=0).stdout


def test_a_remembered_interpreter_that_is_gone_is_looked_for_again(project, tmp_path):
    copy = tmp_path / "py" / "python3"
    copy.parent.mkdir()
    copy.symlink_to(PYTHON)
    bindir = python_bin(tmp_path / "bin", python3=copy)
    env = {"XDG_CACHE_HOME": None, "HOME": str(tmp_path / "home"),
           "PATH": "{}:/usr/bin:/bin".format(bindir)}
    project.run(["./tool-a"], env=env, check=0)
    assert memo(tmp_path / "home")[env["PATH"]] == str(bindir / "python3")
    (bindir / "python3").unlink()  # a Python upgrade: the remembered one is gone
    (bindir / "python3").symlink_to(PYTHON)
    copy.unlink()
    assert json.loads(project.run(["./tool-a"], env=env, check=0).stdout)["version"] == "1.0"


@pytest.mark.skipif(not old_pythons(), reason="pyenv has no CPython 3.6 or 3.7 here")
def test_an_old_python3_runs_appenv_under_the_newest_python3_x(project, tmp_path):
    """RHEL 8: python3 is 3.6, python3.11 is installed beside it. appenv runs under the newest
    python3.X, and remembers it; APPENV_PYTHON naming the old one is a clear 69."""
    old = old_pythons()[0]
    interpreters = {"python3": old, "python3_11": PYTHON}
    if pyenv_python(9):
        interpreters["python3_9"] = pyenv_python(9)
    bindir = python_bin(tmp_path / "bin", **interpreters)
    unselected = bindir / "python3.13"  # pyenv's shim of a version not selected: fails
    unselected.write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
    unselected.chmod(0o755)
    env = {"XDG_CACHE_HOME": None, "HOME": str(tmp_path / "home"),
           "PATH": "{}:/usr/bin:/bin".format(bindir)}
    for _ in range(2):
        result = project.run(["./tool-a"], env=env, check=0)
        assert json.loads(result.stdout)["version"] == "1.0", result.stderr
    assert memo(tmp_path / "home")[env["PATH"]] == str(bindir / "python3.11")
    assert project.cmd("status", env=env, check=0).stdout.startswith("Project:")
    result = project.refused(["./tool-a"], 69, "appenv needs Python 3.8 or newer",
                             "APPENV_PYTHON=" + old, env=dict(env, APPENV_PYTHON=old))


def test_no_python_3_8_or_newer_is_69(project, tmp_path):
    """Only an old python3, or none at all: exit 69 saying what was found, no traceback."""
    env = {"XDG_CACHE_HOME": None, "HOME": str(tmp_path / "home")}
    if old_pythons():
        old = python_bin(tmp_path / "old", python3=old_pythons()[-1])
        result = project.refused(["./tool-a"], 69, "appenv needs Python 3.8 or newer",
                                 "python3 is Python 3.", "no python3.8 or newer",
                                 env=dict(env, PATH=str(old)))
    none = tmp_path / "none"
    none.mkdir()
    result = project.refused(["./tool-a"], 69, "appenv needs Python 3.8 or newer",
                             "neither python3 nor python3.8", env=dict(env, PATH=str(none)))
    assert "Traceback" not in result.stderr


def test_an_air_gapped_folder_with_the_libraries_serves_them_last(own_index_project, index,
                                                                  tmp_path):
    """The user's configuration reaches nothing; the project's own folder of wheels has
    packaging and tomli too: appenv takes them from there, the last source."""
    python = pyenv_python(9) or PYTHON
    for pattern in ("packaging-*.whl", "tomli-*.whl"):
        for wheel in index.glob(pattern):
            shutil.copy(str(wheel), str(own_index_project.wheels))
    project = own_index_project()
    empty = tmp_path / "empty-index"
    empty.mkdir()
    bindir = python_bin(tmp_path / "bin", python3=python)
    env = dict(fresh_home(tmp_path, empty.as_uri()), PATH="{}:/usr/bin:/bin".format(bindir))
    result = project.cmd("update-lockfile", env=env, check=0)
    assert "added      tool-a 1.0" in result.stderr and "Traceback" not in result.stderr


def test_the_lock_summary_without_packaging_still_lists_the_changes(own_index_project,
                                                                   tmp_path):
    """Python 3.11+ needs nothing to lock; when packaging cannot be had for the summary, uv.lock
    is written all the same, and the changes are listed without upgrade or downgrade."""
    python = pyenv_python(12) or pyenv_python(13)
    if python is None:
        pytest.skip("no CPython 3.12 or 3.13 without packaging here")
    project = own_index_project()
    empty = tmp_path / "empty-index"
    empty.mkdir()
    bindir = python_bin(tmp_path / "bin", python3=python)
    env = dict(fresh_home(tmp_path, empty.as_uri()), PATH="{}:/usr/bin:/bin".format(bindir))
    project.cmd("update-lockfile", env=env, check=0)  # packaging wanted for nothing yet
    project.pyproject(["tool-a==1.5"], extra=project_index(project))
    result = project.cmd("update-lockfile", env=env, check=0)
    assert "does not tell upgrades from downgrades" in result.stderr
    assert "changed    tool-a 1.0 -> 1.5" in result.stderr and "Traceback" not in result.stderr
    assert 'version = "1.5"' in (project.root / "uv.lock").read_text()


@pytest.mark.skipif(not old_pythons(), reason="pyenv has no CPython 3.6 or 3.7 here")
def test_a_remembered_python3_that_became_too_old_is_replaced(project, tmp_path):
    bindir = python_bin(tmp_path / "bin", python3=PYTHON, python3_11=PYTHON)
    env = {"XDG_CACHE_HOME": None, "HOME": str(tmp_path / "home"),
           "PATH": "{}:/usr/bin:/bin".format(bindir)}
    project.run(["./tool-a"], env=env, check=0)
    assert memo(tmp_path / "home")[env["PATH"]] == str(bindir / "python3")
    (bindir / "python3").unlink()
    (bindir / "python3").symlink_to(old_pythons()[0])  # a downgrade behind the same name
    assert json.loads(project.run(["./tool-a"], env=env, check=0).stdout)["version"] == "1.0"
    assert memo(tmp_path / "home")[env["PATH"]] == str(bindir / "python3.11")


def test_a_relative_xdg_cache_home_is_ignored(project, tmp_path):
    """As the XDG specification says: appenv's cache is then ~/.cache/appenv, wherever the tool
    is run from."""
    env = {"XDG_CACHE_HOME": "relative-cache", "HOME": str(tmp_path / "home")}
    for cwd in (project.root, tmp_path):
        project.run([project.root / "tool-a"], env=env, cwd=cwd, check=0)
        assert not (cwd / "relative-cache").exists()
    assert (tmp_path / "home" / ".cache" / "appenv" / "bytecode").is_dir()


def test_a_symlink_needs_tomli_only(own_index_project, index, tmp_path):
    """Before Python 3.11 a first build reads pyproject.toml with tomli: the project's folder
    has tomli and no packaging, nor has the user's index: the symlink works."""
    python = pyenv_python(9)
    if python is None:
        pytest.skip("no CPython 3.9 here")
    for wheel in index.glob("tomli-*.whl"):
        shutil.copy(str(wheel), str(own_index_project.wheels))
    project, env = locked_for_a_user_without_an_index(own_index_project(), tmp_path, python)
    result = project.run(["./tool-a"], env=env)
    assert json.loads(result.stdout)["version"] == "1.0", result.stderr
    assert "installing tomli>=1.1" in result.stderr and "packaging" not in result.stderr


# What a run with the environment ready, a first run of files built before, and an
# update-lockfile with a plan import beyond a bare `python3 -I -S`, when they exec or end:
# appenv.py's comment after `import sys` lists what they do without.
IMPORTS = '''
import posix, sys
before = set(sys.modules)
def execve(path, args, environ):
    print(" ".join(sorted(set(sys.modules) - before)), flush=True)
    posix._exit(0)
posix.execve = execve
launcher = sys.argv[1]
module = type(sys)("appenv")
module.__file__ = launcher
exec(compile(open(launcher, "rb").read(), launcher, "exec"), module.__dict__)
status = module.main(sys.argv[2:])
execve(None, None, None) if status == 0 else sys.exit(status)
'''


def test_the_warm_and_the_build_path_import_no_more_than_they_need(project, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(IMPORTS)

    def imports(target, *args):
        result = target.run([PYTHON, "-I", "-S", str(driver), str(target.root / "appenv"),
                             str(target.root / ("appenv" if args else "tool-a"))] + list(args))
        assert result.returncode == 0, result.stderr
        return set(result.stdout.split()) or {"nothing"}

    project.run(["./tool-a"], check=0)  # built; the plan remembered
    allowed = {"_blake2", "fcntl"}
    assert imports(project) <= allowed
    fresh = project.clone("fresh")  # a first run that recalls the plan and runs uv sync
    assert imports(fresh) <= allowed
    assert fresh.current().is_dir()
    (fresh.root / "pyproject.toml").write_text(
        (fresh.root / "pyproject.toml").read_text() + "\n[tool.ruff]\nline-length = 99\n")
    assert "os" in imports(fresh)  # parsed: the rest of the file may use os (it can fail)
    # uv lock with nothing to change, its uv from the plan: as little as a build
    assert imports(project, "update-lockfile") <= allowed


@pytest.mark.parametrize("python", [PYTHON] + [p for p in pythons() if "/3.13." in p])
def test_a_module_in_the_working_directory_is_not_imported(project, tmp_path, python):
    """Isolated (-I): files named like modules appenv or Python's start import (3.13 reads
    linecache for `-c`), in the directory the user runs from, are not what runs."""
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in ("fcntl", "_blake2", "os", "json", "linecache"):
        (evil / (name + ".py")).write_text("raise SystemExit('imported from the cwd')\n")
    for argv in ([str(project.root / "tool-a")], [str(project.appenv), "status"]):
        result = project.run(argv, cwd=str(evil), env={"APPENV_PYTHON": python}, check=0)
        assert "imported from the cwd" not in result.stderr
