"""A project's life: its status, updating its launcher, workspaces, and a Docker build."""

import fcntl
import json
import os
import shutil

import pytest

from conftest import LAUNCHER


def status(project, **kwargs):
    result = project.cmd("status", "--json", **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_reports_the_project_uv_lock_environments_and_links(project):
    project.link("no-such-tool")
    report = status(project)
    assert report["project"] == str(project.root)
    assert report["uv"]["found"] == "PATH" and report["uv"]["version"]
    assert report["lock"] == {"present": True, "up_to_date": True}
    assert report["environment"]["state"] == "missing"
    assert [link["name"] for link in report["links"]] == ["no-such-tool", "tool-a"]
    assert {link["binary"] for link in report["links"]} == {None}  # not built: unknown
    assert not (project.root / ".appenv").exists()  # status builds nothing
    project.run(["./tool-a"], check=0)
    report = status(project)
    env = report["environment"]
    assert env["state"] == "ready" and env["python"].count(".") == 2
    assert env["path"] == str(project.current())
    assert {link["name"]: link["binary"] for link in report["links"]} == {
        "no-such-tool": False, "tool-a": True}
    (kept,) = report["environments"]
    assert kept["current"] and kept["state"] == "ready" and not kept["in_use"]
    text = project.cmd("status", check=0).stdout
    assert "no-such-tool" in text and "no such binary" in text and "ready" in text
    project.pyproject(["tool-a==2.0"])  # pyproject.toml changed, uv.lock not
    report = status(project)
    assert report["lock"]["up_to_date"] is False
    assert report["environment"]["state"] == "stale"
    text = project.cmd("status", check=0).stdout
    assert "outdated: run ./appenv update-lockfile" in text and "stale" in text


def test_status_tells_a_partial_and_an_incomplete_environment_from_a_missing_one(project):
    path = project.cmd("prepare", "--no-install-project", check=0).stdout.strip()
    assert status(project)["environment"]["state"] == "partial"
    project.cmd("reset", check=0)
    os.makedirs(path)  # what a build stopped early leaves
    assert status(project)["environment"]["state"] == "incomplete"
    assert "(incomplete)" in project.cmd("status", check=0).stdout
    with open(project.root / ".appenv" / "lock", "w") as lock:  # as a building appenv holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = status(project)
        assert report["environment"]["state"] == "building"
        assert [e["state"] for e in report["environments"]] == ["building"]
        assert "(building)" in project.cmd("status", check=0).stdout
    assert status(project)["environment"]["state"] == "incomplete"


def test_status_says_what_is_wrong_and_installs_nothing(project, tmp_path):
    (project.root / "pyproject.toml").write_text("[project\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(project.env["PATH"].split(":")[0] + "/python3")
    env = {"PATH": "{}:/usr/bin:/bin".format(bindir), "XDG_CACHE_HOME": str(tmp_path / "c")}
    report = status(project, env=env)
    assert report["uv"]["path"] is None and report["lock"]["up_to_date"] is None
    assert any("pyproject.toml is not valid TOML" in p for p in report["problems"])
    assert not (tmp_path / "c" / "appenv" / "uv").exists()  # no uv installed by status
    assert "not found (installed on first use)" in project.cmd("status", env=env).stdout


def test_self_update_writes_this_launcher_over_the_project_s(project, tmp_path):
    newer = tmp_path / "newer" / "appenv.py"
    newer.parent.mkdir()
    newer.write_text(open(LAUNCHER).read().replace('__version__ = "', '__version__ = "9'))
    newer.chmod(0o755)
    def run(*args):
        return project.run(["python3", str(newer), "self-update"] + list(args),
                           cwd=tmp_path)
    result = run("--check", str(project.root))
    assert result.returncode == 1 and "differs" in result.stderr
    assert "run: python3 {} self-update {}".format(newer, project.root) in result.stderr
    assert (project.root / "appenv").read_bytes() == open(LAUNCHER, "rb").read()
    result = run(str(project.root))
    assert result.returncode == 0, result.stderr
    assert "from appenv 0.1.0 to 90.1.0" in result.stderr
    assert (project.root / "appenv").read_bytes() == newer.read_bytes()
    assert os.access(str(project.root / "appenv"), os.X_OK)
    assert run("--check", str(project.root / "appenv")).returncode == 0
    assert "9" in project.cmd("--version", check=0).stdout  # the link runs the new launcher
    assert json.loads(project.run(["./tool-a"], check=0).stdout)["version"] == "1.0"
    assert run(str(tmp_path / "nothing-here")).returncode == 66


WORKSPACE = """
[tool.uv.workspace]
members = ["packages/*"]
[tool.appenv]
"""


def test_workspace_packages_select_the_members_and_their_binaries(project_factory):
    project = project_factory(dependencies=[], links=["tool-a", "tool-c"],
                              extra=WORKSPACE + 'packages = ["member-a"]\n', lock=False)
    for member, deps in (("member-a", ["tool-a==1.0"]), ("member-c", ["tool-c"])):
        project.write("packages/{}/pyproject.toml".format(member),
                      '[project]\nname = "{}"\nversion = "0.1"\nrequires-python = ">=3.8"\n'
                      'dependencies = {}\n'.format(member, json.dumps(deps)))
    project.lock()
    assert json.loads(project.run(["./tool-a"], check=0).stdout)["version"] == "1.0"
    assert project.installed() == {"tool-a": "1.0"}  # seed 001: exactly member-a's
    result = project.run(["./tool-c"])
    assert result.returncode == 127 and "tool-a" in result.stderr
    project.pyproject([], extra=WORKSPACE + "all-packages = true\n")
    assert json.loads(project.run(["./tool-c"], check=0).stdout)["tool"] == "tool-c"
    assert project.installed() == {"tool-a": "1.0", "tool-c": "1.0"}


BACKEND = '''
"""A build backend in the project's tree, so that the tests need no index for one: a wheel of
the modules listed in [tool.backend] modules, with [project]'s name, version and scripts."""
import base64, hashlib, os, tomllib, zipfile


def _wheel(directory, editable):
    with open("pyproject.toml", "rb") as f:
        data = tomllib.load(f)
    name, version = data["project"]["name"].replace("-", "_"), data["project"]["version"]
    info = "{}-{}.dist-info/".format(name, version)
    files = {info + "METADATA": "Metadata-Version: 2.1\\nName: {}\\nVersion: {}\\n".format(
                 data["project"]["name"], version),
             info + "WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\n"
                             "Tag: py3-none-any\\n",
             info + "entry_points.txt": "[console_scripts]\\n" + "".join(
                 "{} = {}\\n".format(k, v) for k, v in data["project"].get("scripts", {}).items())}
    if editable:
        files[name + ".pth"] = os.path.abspath(".") + "\\n"
    else:
        for module in data["tool"]["backend"]["modules"]:
            with open(module + ".py") as f:
                files[module + ".py"] = f.read()
    wheel = "{}-{}-py3-none-any.whl".format(name, version)
    record = []
    with zipfile.ZipFile(os.path.join(directory, wheel), "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
            sha = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
            record.append("{},sha256={},{}".format(path, sha.decode(), len(text.encode())))
        z.writestr(info + "RECORD", "\\n".join(record + [info + "RECORD,,"]) + "\\n")
    return wheel


def build_wheel(directory, config_settings=None, metadata_directory=None):
    return _wheel(directory, editable=False)


def build_editable(directory, config_settings=None, metadata_directory=None):
    return _wheel(directory, editable=True)
'''
BUILT_BY_BACKEND = """
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]
[tool.backend]
modules = ["{module}"]
"""


def test_the_dockerfile_recipe_caches_dependencies_in_their_own_layer(project_factory, tmp_path):
    """docs/workflows.md's Dockerfile, step by step, without Docker."""
    source = project_factory(dependencies=["tool-a==1.5"], links=["demo-tool"], lock=False,
                             extra='[project.scripts]\ndemo-tool = "demo_app:main"\n'
                                   + BUILT_BY_BACKEND.format(module="demo_app"))
    source.write("backend.py", BACKEND)
    source.write("demo_app.py", "import json, lib_b\ndef main():\n"
                                "    print(json.dumps({'lib_b': lib_b.VERSION}))\n")
    source.lock()
    image = tmp_path / "image" / "app"
    image.mkdir(parents=True)
    # COPY pyproject.toml uv.lock appenv ./
    for name in ("pyproject.toml", "uv.lock", "appenv"):
        shutil.copy2(str(source.root / name), str(image / name))
    # RUN ./appenv prepare --no-install-project
    layer = type(source)(image, source.env)
    first = layer.cmd("prepare", "--no-install-project", check=0).stdout.strip()
    assert layer.installed(image / first) == {"tool-a": "1.5", "lib-b": "2.0"}
    assert not (image / ".appenv" / "current").exists()  # not for symlinks yet
    # COPY . .
    shutil.copytree(str(source.root), str(image), symlinks=True, dirs_exist_ok=True)
    # RUN ./appenv prepare
    result = layer.cmd("prepare", check=0)
    assert result.stdout.strip() == first  # the same environment, completed in place
    assert "tool-a" not in result.stderr  # dependencies were not installed again
    assert layer.installed(image / first)["demo"] == "0.1"
    # CMD ["./demo-tool"]
    assert json.loads(layer.run(["./demo-tool"], check=0).stdout) == {"lib_b": "2.0"}


def test_a_workspace_member_s_new_binary_is_there_on_the_next_run(project_factory):
    """A member's pyproject.toml decides the environment too, though uv.lock may not change."""
    project = project_factory(dependencies=["member"], links=["first", "second"], lock=False,
                              extra=WORKSPACE + '\n[tool.uv.sources]\nmember = '
                                                '{ workspace = true }\n')
    member = 'name = "member"\nversion = "0.1"\nrequires-python = ">=3.8"\n'
    project.write("packages/member/tool.py", "def main():\n    print('ran')\n")
    project.write("packages/member/backend.py", BACKEND)
    scripts = '[project]\n' + member + '[project.scripts]\nfirst = "tool:main"\n'
    project.write("packages/member/pyproject.toml", scripts + BUILT_BY_BACKEND.format(
        module="tool"))
    project.lock()
    lock = (project.root / "uv.lock").read_text()
    assert project.run(["./first"], check=0).stdout == "ran\n"
    assert project.run(["./second"]).returncode == 127
    project.write("packages/member/pyproject.toml", scripts + 'second = "tool:main"\n'
                  + BUILT_BY_BACKEND.format(module="tool"))
    project.lock()
    assert (project.root / "uv.lock").read_text() == lock  # scripts are not in the lock
    assert project.run(["./second"], check=0).stdout == "ran\n"
    (project.root / "uv.lock").unlink()  # a first lock that pins no package of an index
    result = project.cmd("update-lockfile", check=0)
    assert "uv.lock: written; it pins no package but the project's own" in result.stderr


def test_tool_appenv_python_chooses_the_interpreter(project_factory):
    from test_bootstrap import pythons

    others = [p for p in pythons() if "/3.12." in p]
    if not others:
        pytest.skip("needs a CPython 3.12 from pyenv")
    project = project_factory(extra='[tool.appenv]\npython = "{}"\n'.format(others[0]))
    assert json.loads(project.run(["./tool-a"], check=0).stdout)["version"] == "1.0"
    assert status(project)["environment"]["python"].startswith("3.12.")
