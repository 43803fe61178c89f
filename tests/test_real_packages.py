"""A few runs against the real package index, as a user on a fresh machine would do them."""

import json
import os
import shutil

import pytest

from conftest import LAUNCHER, REPO

pytestmark = pytest.mark.network

# The real index, reached the way this machine reaches it (its certificates and proxies).
REAL = {"UV_FIND_LINKS": None, "UV_DEFAULT_INDEX": None, "PIP_NO_INDEX": None,
        "PIP_FIND_LINKS": None, "PIP_CONFIG_FILE": None}
REAL.update({k: v for k, v in os.environ.items() if k in (
    "SSL_CERT_FILE", "SSL_CERT_DIR", "PIP_CERT", "REQUESTS_CA_BUNDLE", "UV_NATIVE_TLS",
    "UV_SYSTEM_CERTS", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "no_proxy", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "UV_INDEX_URL", "UV_INDEX")})


def test_the_example_runs_its_locked_cowsay(tmp_path, base_env):
    example = tmp_path / "example"
    shutil.copytree(os.path.join(REPO, "example"), example, symlinks=True,
                    ignore=shutil.ignore_patterns(".appenv", ".venv"))
    from conftest import Project

    project = Project(example, base_env)
    result = project.run(["./cowsay", "-t", "Hello from appenv"], env=REAL, check=0)
    assert "Hello from appenv" in result.stdout
    assert "cowsay==6.1" in result.stderr or "cowsay" in result.stderr


def test_a_real_tool_locked_and_run_from_pypi(project_factory):
    project = project_factory(dependencies=["tabulate==0.9.0"], links=["tabulate"], lock=False)
    project.env.update(REAL)
    project.cmd("update-lockfile", check=0)
    assert "pypi.org" in (project.root / "uv.lock").read_text()
    result = project.run(["./tabulate"], input="a b\n1 2\n", check=0)
    assert result.stdout.strip()
    assert project.installed()["tabulate"] == "0.9.0"


def test_uv_installed_from_the_real_index_with_pip(project_factory, tmp_path):
    project = project_factory()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(os.path.realpath(project.env["PATH"].split(":")[0]
                                                     + "/python3"))
    env = dict(REAL, PATH="{}:/usr/bin:/bin".format(bindir),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    result = project.run([project.root / "tool-a"], env=env, check=0)
    assert "installing uv" in result.stderr
    assert json.loads(result.stdout)["tool"] == "tool-a"
    assert os.path.exists(LAUNCHER)
