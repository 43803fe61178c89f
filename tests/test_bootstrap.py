"""Finding uv and appenv's libraries on a machine that has neither, and each CPython."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import PYTHON, UV, uv_version


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
