"""init: a new project from options or from answers on a terminal, then its links run."""

import json
import os
import select
import subprocess
import sys
import time

import pytest
from packaging.specifiers import SpecifierSet

from conftest import LAUNCHER

try:
    import tomllib
except ImportError:
    import tomli as tomllib

PYTHON_XY = "{}.{}".format(*sys.version_info[:2])  # the Python of UV_PYTHON in base_env


def pyproject(project):
    return tomllib.loads((project.root / "pyproject.toml").read_text())


def version_of(project, link):
    result = project.run([link if os.path.isabs(str(link)) else "./" + link], check=0)
    return json.loads(result.stdout)["version"]


def test_init_with_options_then_the_link_runs(bare_factory):
    project = bare_factory()
    result = project.cmd("init", "--name", "ops-tools", "--dep", "tool-a==1.0", "--binary",
                         "tool-a", "--description", 'Tools "we" use\tdaily: ünï 🚀', check=0)
    assert result.stdout == ""
    assert "created the project ops-tools" in result.stderr
    assert "./tool-a" in result.stderr and "git add" in result.stderr
    table = pyproject(project)
    assert table["project"] == {
        "name": "ops-tools", "version": "0.1.0", "description": 'Tools "we" use\tdaily: ünï 🚀',
        "requires-python": ">=" + PYTHON_XY, "dependencies": ["tool-a==1.0"]}
    assert "build-system" not in table  # virtual: uv installs the dependencies, not the project
    assert os.readlink(project.root / "tool-a") == "appenv"
    assert (project.root / "uv.lock").exists()
    assert (project.root / ".gitignore").read_text() == ".appenv/\n.venv/\n"
    assert version_of(project, "tool-a") == "1.0"
    assert project.cmd("update-lockfile", "--check").returncode == 0


def test_init_path_from_a_launcher_elsewhere_creates_the_directory(bare_factory, tmp_path):
    somewhere = bare_factory("somewhere")
    target = tmp_path / "deep" / "new project"
    somewhere.run([LAUNCHER, "init", target, "--name", "deep", "--dep", "tool-c",
                   "--binary", "tool-c", "--binary", "tool-c"], cwd=tmp_path, check=0)
    assert (target / "appenv").read_bytes() == open(LAUNCHER, "rb").read()
    assert os.access(target / "appenv", os.X_OK)
    assert sorted(os.listdir(target)) == [".gitignore", "appenv", "pyproject.toml", "tool-c",
                                          "uv.lock"]
    assert version_of(somewhere, target / "tool-c") == "1.0"
    assert not (somewhere.root / "pyproject.toml").exists()


class Terminal:
    """A command on a pseudo-terminal: what it says is read as it comes, answers are typed."""

    def __init__(self, argv, cwd, env):
        master, slave = os.openpty()
        self.proc = subprocess.Popen([str(a) for a in argv], cwd=str(cwd), env=env,
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.fd, self.seen, self.output = master, 0, b""

    def expect(self, text, timeout=120):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output[self.seen:]:
            assert time.monotonic() < deadline, self.output.decode(errors="replace")
            if not self.read(deadline - time.monotonic()):
                raise AssertionError("ended before {!r}:\n{}".format(text, self.text()))
        self.seen = self.output.index(text.encode(), self.seen) + len(text)

    def read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the other side closed
            data = b""
        self.output += data
        return bool(data)

    def answer(self, question, text):
        self.expect(question)
        os.write(self.fd, text.encode() + b"\n")

    def wait(self, timeout=120):
        while self.read(timeout):
            pass
        os.close(self.fd)
        return self.proc.wait(timeout=timeout)

    def text(self):
        return self.output.decode(errors="replace")


def test_init_asks_on_a_terminal_then_the_link_runs(bare_factory):
    project = bare_factory("my tools")
    terminal = Terminal([project.appenv, "init"], project.root, project.env)
    terminal.answer("Project name [my-tools]:", "")
    terminal.answer("Description:", "Deploy tools")
    terminal.answer("Dependency", "tool-a>>1")  # not a requirement: asked again
    terminal.expect("is not a requirement")
    terminal.answer("Dependency", "tool-a==1.5")
    terminal.answer("Dependency", "tool-c")
    terminal.answer("Dependency", "")
    terminal.answer("Binaries to link", "")  # the default: one per dependency
    terminal.answer("Python", "")
    assert terminal.wait() == 0, terminal.text()
    assert "[tool-a tool-c]" in terminal.text() and "[{}]".format(PYTHON_XY) in terminal.text()
    project_table = pyproject(project)["project"]
    assert project_table["name"] == "my-tools"
    assert project_table["description"] == "Deploy tools"
    assert project_table["dependencies"] == ["tool-a==1.5", "tool-c"]
    assert project_table["requires-python"] == ">=" + PYTHON_XY
    assert version_of(project, "tool-a") == "1.5"
    assert version_of(project, "tool-c") == "1.0"


def test_without_a_terminal_or_options_it_is_64_with_an_example(bare_factory):
    project = bare_factory()
    project.refused([project.appenv, "init"], 64, "./appenv init --name ops-tools --dep",
                    stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, words", [
    (["--dep", "tool-a"], "--name is missing"),
    (["--name", "two words"], "not a valid project name"),
    (["--name", "x[extra]"], "not a valid project name"),
    (["--name", "x", "--dep", "tool-a >> 1"], "not a requirement"),
    (["--name", "x", "--binary", "../up"], "cannot be a binary's link"),
    (["--name", "x", "--binary", "uv.lock"], "cannot be a binary's link"),
    (["--name", "x", "--python", "banana"], "not a Python version"),
    (["--name", "x", "--bogus"], "unexpected option"),
    (["--name"], "needs a value"),
    (["--name", "x", "--name", "y"], "given twice"),
    (["a", "b", "--name", "x"], "unexpected argument"),
])
def test_bad_options_are_64_and_nothing_is_written(bare_factory, args, words):
    project = bare_factory()
    project.refused([project.appenv, "init"] + args, 64, words)


def test_an_existing_project_table_is_refused_with_nothing_changed(bare_factory):
    project = bare_factory()
    project.write("pyproject.toml", '[project]\nname = "old"\nversion = "1"\n')
    project.write(".gitignore", "*.pyc\n")
    project.refused([project.appenv, "init", "--name", "new", "--dep", "tool-a", "--binary",
                     "tool-a"], 65, "already has a [project] table")


def test_a_pyproject_without_project_gets_one_and_keeps_the_rest(bare_factory):
    project = bare_factory()
    old = '# linters\n[tool.ruff]\nline-length = 100  # wide\n\n[tool.ruff.lint]\nselect = ["E"]'
    project.write("pyproject.toml", old)  # no newline at the end
    project.write(".gitignore", "*.pyc\n.venv")
    project.cmd("init", "--name", "demo", "--dep", "tool-a==1.0", "--python", PYTHON_XY,
                check=0)
    text = (project.root / "pyproject.toml").read_text()
    assert text.startswith(old + "\n")
    table = tomllib.loads(text)
    assert table["tool"]["ruff"] == {"line-length": 100, "lint": {"select": ["E"]}}
    assert table["project"]["requires-python"] == ">=" + PYTHON_XY
    assert table["tool"]["appenv"] == {"python": PYTHON_XY}
    assert (project.root / ".gitignore").read_text() == "*.pyc\n.venv\n.appenv/\n"
    project.link("tool-a")
    assert version_of(project, "tool-a") == "1.0"


def test_a_python_specifier_is_requires_python_only(bare_factory):
    project = bare_factory()
    project.cmd("init", "--name", "demo", "--python", ">=3.8, <4", check=0)
    table = pyproject(project)
    assert SpecifierSet(table["project"]["requires-python"]) == SpecifierSet("<4,>=3.8")
    assert table["project"]["dependencies"] == []
    assert "appenv" not in table.get("tool", {})


def test_a_failed_lock_puts_every_file_back(bare_factory):
    project = bare_factory()
    project.write("pyproject.toml", "[tool.ruff]\nline-length = 100\n")
    project.write(".gitignore", "*.pyc\n")
    result = project.refused(  # uv's status and message, then the step that failed
        [project.appenv, "init", "--name", "demo", "--dep", "tool-a==9.9", "--binary", "tool-a"],
        1, "creating uv.lock failed", "Nothing was changed")
    assert "tool-a" in result.stderr.split("creating uv.lock failed")[0]


def test_a_different_appenv_is_not_overwritten(bare_factory, tmp_path):
    project = bare_factory(launcher=False)
    project.write("appenv", "#!/bin/sh\necho mine\n")
    project.refused([LAUNCHER, "init", project.root, "--name", "demo"], 65,
                    "is not this launcher", "nothing was changed", cwd=tmp_path)


def test_an_existing_file_in_the_way_of_a_link_is_refused(bare_factory):
    project = bare_factory()
    project.write("tool-a", "a file of mine\n")
    project.refused([project.appenv, "init", "--name", "demo", "--dep", "tool-a", "--binary",
                     "tool-a"], 65, "is not a link to appenv")


def test_a_python_uv_cannot_find_is_refused_before_anything_is_written(bare_factory):
    project = bare_factory()
    result = project.refused([project.appenv, "init", "--name", "demo", "--dep", "tool-a==1.0",
                              "--binary", "tool-a", "--python", "3.99"], 64,
                             "uv finds no Python for '3.99'", "nothing was written")
    line = result.stderr.split("To run init again with these answers:\n")[1].strip()
    assert line == "./appenv init --name demo --dep tool-a==1.0 --binary tool-a --python 3.99"


def test_after_the_questions_a_failure_prints_the_line_that_redoes_them(bare_factory):
    project = bare_factory("my tools")
    terminal = Terminal([project.appenv, "init"], project.root, project.env)
    terminal.answer("Project name [my-tools]:", "")
    terminal.answer("Description:", "it's ours")
    terminal.answer("Dependency", "tool-a==9.9")  # no such version: the lock fails
    terminal.answer("Dependency", "")
    terminal.answer("Binaries to link", "-")
    terminal.answer("Python", "")
    assert terminal.wait() == 1
    text = terminal.text().replace("\r\n", "\n")
    assert "Nothing was changed" in text
    assert ("  ./appenv init --name my-tools --dep tool-a==9.9 --python '>={}' --description "
            "'it'\"'\"'s ours'".format(PYTHON_XY)) in text
    assert sorted(os.listdir(project.root)) == ["appenv"]
