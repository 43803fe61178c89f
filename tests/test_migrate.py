"""migrate: a classic appenv project (requirements.txt, requirements.lock, ./NAME -> appenv)
becomes pyproject.toml and uv.lock, with the locked versions kept and the links working."""

import base64
import hashlib
import http.server
import json
import os
import sys
import threading

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from conftest import LAUNCHER, Project, listing

try:
    import tomllib
except ImportError:
    import tomli as tomllib

MINOR = sys.version_info[:2]  # the Python of UV_PYTHON in base_env
CLASSIC = "#!/usr/bin/env python3\n# the classic appenv (flyingcircus/appenv)\n"


@pytest.fixture
def classic(tmp_path, base_env):
    """A classic appenv project: requirements.txt, requirements.lock, ./tool-a -> appenv, and
    the classic environments in .appenv; make(requirements, pins) writes its files."""
    def make(requirements, pins=None, name="classic"):
        root = tmp_path / name
        root.mkdir()
        project = Project(root, base_env)
        project.write("appenv", CLASSIC)
        os.chmod(project.appenv, 0o755)
        project.link("tool-a")
        project.write("requirements.txt", requirements)
        if pins is not None:
            digest = hashlib.sha256((root / "requirements.txt").read_bytes()).hexdigest()
            project.write("requirements.lock", "# appenv-requirements-hash: {}\n{}".format(
                digest, "".join(pin + "\n" for pin in pins)))
        (root / ".appenv" / "0123abcd" / "bin").mkdir(parents=True)
        (root / ".appenv" / "0123abcd" / "appenv.ready").write_text("Ready or not\n")
        os.symlink("0123abcd", str(root / ".appenv" / "current"))
        project.write(".gitignore", ".appenv/\n")
        return project

    return make


def migrate(project, *args, **kwargs):
    """Run the new launcher on the classic project, from outside it, as a user would."""
    return project.run(migration(project, *args), cwd=project.root.parent, **kwargs)


def migration(project, *args):
    return [LAUNCHER, "migrate", project.root] + list(args)


def version_of(project, link="tool-a", env=None):
    return json.loads(project.run(["./" + link], env=env, check=0).stdout)["version"]


def test_locked_versions_are_kept_and_the_links_keep_working(classic):
    preference = "{0}.{1},{0}.{2}".format(MINOR[0], MINOR[1] - 1, MINOR[1])
    project = classic("# appenv-python-preference: {}\ntool-a\n".format(preference),
                      pins=["lib-b==1.0", "setuptools==40.0", "tool-a==1.5"])
    kept = {name: (project.root / name).read_bytes()
            for name in ("requirements.txt", "requirements.lock")}
    result = migrate(project, check=0)
    assert result.stdout == ""
    assert "versions kept from requirements.lock: 2 of 3 pins" in result.stderr
    assert "The links keep working: tool-a" in result.stderr
    table = tomllib.loads((project.root / "pyproject.toml").read_text())
    assert table["project"]["name"] == "classic"
    assert table["project"]["dependencies"] == ["tool-a"]  # as requirements.txt says: no pin
    assert SpecifierSet(table["project"]["requires-python"]) == SpecifierSet(
        ">={0}.{1},<{0}.{2}".format(MINOR[0], MINOR[1] - 1, MINOR[1] + 1))
    assert "tool" not in table  # the pins were for the first lock only
    assert (project.root / "appenv").read_bytes() == open(LAUNCHER, "rb").read()
    assert version_of(project) == "1.5"  # 2.0 is in the index: nothing was upgraded
    assert project.installed()["lib-b"] == "1.0"
    for name, data in kept.items():
        assert (project.root / name).read_bytes() == data
    # The classic environments are gone; appenv's own are in .appenv/envs.
    assert sorted(os.listdir(project.root / ".appenv")) == [".gitignore", "current", "envs",
                                                           "lock", "pyproject", "relevant"]
    assert (project.root / ".gitignore").read_text() == ".appenv/\n.venv/\n"
    # A normal project from now on: locked as pyproject.toml says, and free to upgrade.
    assert project.cmd("update-lockfile", "--check").returncode == 0
    result = project.cmd("update-lockfile", "--upgrade", check=0)
    assert "upgraded   tool-a 1.5 -> 2.0" in result.stderr
    assert version_of(project) == "2.0"


def test_without_requirements_lock_the_newest_versions_are_locked(classic):
    project = classic("tool-a\n")
    result = migrate(project, "--name", "ops", check=0)
    assert "no requirements.lock" in result.stderr
    table = tomllib.loads((project.root / "pyproject.toml").read_text())
    assert table["project"]["name"] == "ops"
    assert table["project"]["requires-python"] == ">={}.{}".format(*MINOR)
    assert version_of(project) == "2.0"


def test_options_without_an_equivalent_are_listed_by_name(classic):
    project = classic(
        "-e ./mypkg\n"
        "tool-a \\\n"
        "    >=1.0  # a comment\n"
        "tool-c==1.0 --hash=sha256:0123 \\\n"
        "    --hash=sha256:4567\n"
        "-r other.txt\n"
        "--constraint constraints.txt\n"
        "--pre\n"
        "./wheels/local-1.0-py3-none-any.whl\n"
        "lib-d ; python_version >= '3'  # markers are kept\n")
    result = migrate(project, check=0)
    err = result.stderr
    assert "requirements.txt line 1: -e ./mypkg" in err and "--editable" in err
    assert "requirements.txt line 4: --hash" in err
    assert "sha256:0123" not in err
    assert "requirements.txt line 6: -r other.txt" in err
    assert "requirements.txt line 7: --constraint constraints.txt" in err
    assert "requirements.txt line 8: --pre" in err
    assert "requirements.txt line 9: ./wheels/local-1.0-py3-none-any.whl" in err
    table = tomllib.loads((project.root / "pyproject.toml").read_text())
    written = {r.name: r for r in map(Requirement, table["project"]["dependencies"])}
    assert {name: str(r.specifier) for name, r in written.items()} == {
        "tool-a": ">=1.0", "tool-c": "==1.0", "lib-d": ""}  # as uv add --raw writes them
    assert written["lib-d"].marker.evaluate() and not written["tool-a"].marker
    assert version_of(project) == "2.0"


class Index(http.server.BaseHTTPRequestHandler):
    """A PEP 503 simple index (/simple/) and a flat page (/flat/) of a folder of wheels, behind
    HTTP basic authentication."""

    wheels = None
    credentials = None
    served = None

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head=False):
        self.head = head
        expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="index"')
            self.end_headers()
            return
        self.served.append(self.path)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        names = sorted(os.listdir(self.wheels))
        if parts[:1] == ["files"] and len(parts) == 2 and parts[1] in names:
            with open(os.path.join(self.wheels, parts[1]), "rb") as f:
                return self.reply(f.read(), "application/octet-stream")
        if parts[:1] == ["simple"] and len(parts) == 2:
            names = [n for n in names if n.split("-")[0].replace("_", "-") == parts[1]]
        elif parts != ["flat"]:
            return self.reply(b"not found", "text/plain", 404)
        links = "".join('<a href="/files/{0}">{0}</a>\n'.format(n) for n in names)
        self.reply("<html><body>\n{}</body></html>\n".format(links).encode(), "text/html")

    def reply(self, body, kind, status=200):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self.head:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def private_index(index):
    """The fixture's wheels served at http://127.0.0.1:PORT/ with user alice's password."""
    password = "s3cr3t-Pa55w0rd"
    handler = type("Handler", (Index,), {"wheels": str(index), "served": [],
                                          "credentials": "alice:" + password})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:{}".format(server.server_address[1]), password, handler.served
    finally:
        server.shutdown()
        server.server_close()


def test_index_credentials_are_never_shown_nor_written(classic, private_index, appenv_libraries):
    url, password, served = private_index
    host = url.split("//")[1]
    project = classic(
        "--index-url http://alice:{0}@{1}/simple/\n"
        "--find-links http://alice:{0}@{1}/flat/\n"
        "tool-a\n".format(password, host), pins=["tool-a==1.5", "lib-b==1.0"])
    only_the_private_index = {"UV_FIND_LINKS": None, "UV_DEFAULT_INDEX": None,
                              "APPENV_VERBOSE": "1"}
    result = migrate(project, env=only_the_private_index)
    assert result.returncode == 0, result.stderr
    assert served  # uv was given the credentials, and used them
    for output in (result.stdout, result.stderr):
        assert password not in output
    for variable in ("UV_INDEX_127_0_0_1_USERNAME", "UV_INDEX_127_0_0_1_PASSWORD",
                     "UV_INDEX_127_0_0_1_2_USERNAME", "UV_INDEX_127_0_0_1_2_PASSWORD"):
        assert variable in result.stderr
    indexes = tomllib.loads((project.root / "pyproject.toml").read_text())["tool"]["uv"]["index"]
    assert indexes == [
        {"name": "127-0-0-1", "url": url + "/simple/", "default": True},
        {"name": "127-0-0-1-2", "url": url + "/flat/", "format": "flat"}]
    for name, data in listing(project.root).items():
        if name != "requirements.txt":  # the user's own file, left as it was
            assert password.encode() not in (data if isinstance(data, bytes) else b""), name
    # Where the project runs, the credentials come from the variables migrate named.
    credentials = dict(only_the_private_index, UV_INDEX_127_0_0_1_USERNAME="alice",
                       UV_INDEX_127_0_0_1_PASSWORD=password,
                       UV_CACHE_DIR=str(project.root.parent / "empty-cache"))
    assert version_of(project, env=credentials) == "1.5"
    assert any(path.startswith("/files/tool_a-1.5") for path in served)


def test_an_existing_project_table_is_refused_with_nothing_changed(classic):
    project = classic("tool-a\n", pins=["tool-a==1.5"])
    project.write("pyproject.toml", '[project]\nname = "done"\nversion = "1"\n')
    project.refused(migration(project), 65, "already has a [project] table")


def test_an_existing_tool_uv_table_is_kept_and_the_pins_still_hold(classic):
    project = classic("tool-a\n", pins=["tool-a==1.5"])
    project.write("pyproject.toml", '[tool.uv]\nrequired-version = ">=0.8"\n')
    migrate(project, check=0)
    table = tomllib.loads((project.root / "pyproject.toml").read_text())
    assert table["tool"]["uv"] == {"required-version": ">=0.8"}
    assert version_of(project) == "1.5"


def test_no_requirements_txt_is_66(tmp_path, base_env):
    project = Project(tmp_path, base_env)
    project.refused(migration(project), 66, "No requirements.txt", "init")
    # run from a classic project, without PATH: the hint names the way to migrate it
    (tmp_path / "requirements.txt").write_text("tool-a\n")
    result = project.refused([LAUNCHER, "migrate"], 66, "No requirements.txt in")
    assert "python3 {} migrate {}".format(os.path.realpath(LAUNCHER), tmp_path) in \
        result.stderr


def test_a_bad_python_preference_is_65(classic):
    project = classic("# appenv-python-preference: 3.9,python3.10\ntool-a\n")
    project.refused(migration(project), 65, "requirements.txt line 1", "'python3.10'")


def test_a_mistyped_requirement_is_65_with_nothing_changed(classic):
    """`six=1.16.0` is neither a requirement nor a file: pip refuses the file, and so does
    migrate, before it writes or removes anything (a path or a URL is listed, not refused)."""
    project = classic("tool-a==1.0\ntool-c=1.0\n./wheels/local-1.0-py3-none-any.whl\n")
    project.refused(migration(project), 65, "requirements.txt line 2: tool-c=1.0 is not a "
                    "requirement", "nothing was changed")
    assert not (project.root / "pyproject.toml").exists()
    assert (project.root / ".appenv" / "0123abcd").is_dir()  # the classic environment stays
    assert (project.root / "appenv").read_text() == CLASSIC


def test_a_failed_lock_puts_every_file_back(classic):
    project = classic("tool-a\n", pins=["tool-a==9.9"])  # no such version
    project.refused(migration(project), 1,
                    "locking with the versions pinned in requirements.lock failed",
                    "Nothing was changed", "requirements.lock away")
