"""Production environments: exact, keyed by content, safe under crashes and concurrency."""

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest


def version_of(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["version"]


def logged_uv(project, tmp_path):
    """APPENV_UV as a wrapper of the session's uv that logs each command line it is given."""
    log = tmp_path / "uv.log"
    wrapper = tmp_path / "bin" / "uv"
    wrapper.parent.mkdir()
    wrapper.write_text('#!/bin/sh\necho "$*" >> "{}"\nexec "{}" "$@"\n'.format(
        log, project.env["PATH"].split(":")[0] + "/uv"))
    wrapper.chmod(0o755)
    return {"APPENV_UV": str(wrapper)}, log


def commands(log):
    """The uv commands logged (`logged_uv`), their first words."""
    return [line.split()[0] for line in log.read_text().splitlines()]


def relock(project, dependencies):
    project.pyproject(dependencies)
    project.lock()


def test_a_lock_switch_drops_a_package_and_applies_versions(project_factory):
    project = project_factory(dependencies=["tool-a==1.5", "lib-d"])
    project.run(["./tool-a"], check=0)
    assert project.installed() == {"tool-a": "1.5", "lib-b": "2.0", "lib-d": "1.0"}
    relock(project, ["tool-a==1.0"])  # seed 000: lib-d and lib-b leave the lock
    assert version_of(project.run(["./tool-a"])) == "1.0"
    assert project.installed() == {"tool-a": "1.0"}


def test_switching_back_to_a_lock_installs_nothing(project):
    lock_a = (project.root / "uv.lock").read_text()
    pyproject_a = (project.root / "pyproject.toml").read_text()
    project.run(["./tool-a"], check=0)
    relock(project, ["tool-a==2.0"])
    assert version_of(project.run(["./tool-a"])) == "2.0"
    (project.root / "uv.lock").write_text(lock_a)  # git switch A
    (project.root / "pyproject.toml").write_text(pyproject_a)
    result = project.run(["./tool-a"], env={"APPENV_VERBOSE": "1"})
    assert version_of(result) == "1.0"
    assert result.stderr == ""  # no uv, no install: the environment was still there
    assert len(project.environments()) == 2


def test_keep_removes_the_oldest_never_the_current(project_factory):
    project = project_factory(extra="[tool.appenv]\nkeep = 2\n")
    keys = []
    for deps in (["tool-a==1.0"], ["tool-a==1.5"], ["tool-a==2.0"]):
        project.pyproject(deps, extra="[tool.appenv]\nkeep = 2\n")
        project.lock()
        project.run(["./tool-a"], check=0)
        keys.append(project.current().name)
    assert project.environments() == sorted(keys[1:])
    assert project.current().name == keys[-1]


def test_a_link_among_the_environments_is_removed_not_followed(project, tmp_path):
    """Garbage collection removes what is not an environment; a link goes, not its target."""
    project.run(["./tool-a"], check=0)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "bin").mkdir(parents=True)
    (project.root / ".appenv" / "envs" / "linked").symlink_to(elsewhere)
    relock(project, ["tool-a==1.5"])
    project.run(["./tool-a"], check=0)
    assert sorted(os.listdir(str(project.root / ".appenv" / "envs"))) == project.environments()
    assert len(project.environments()) == 2 and (elsewhere / "bin").is_dir()


def test_sixteen_simultaneous_first_runs(project):
    procs = [subprocess.Popen([str(project.root / "tool-a"), str(i)], cwd=str(project.root),
                              env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(16)]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert json.loads(out)["argv"][1:] == [str(i)]
    assert len(project.environments()) == 1
    assert project.installed() == {"tool-a": "1.0"}


def test_sigkill_at_random_moments_never_leaves_a_used_half_build(project_factory):
    project = project_factory(dependencies=["tool-a==1.5", "lib-d"])
    rng = random.Random(7)
    for round_ in range(6):
        proc = subprocess.Popen([str(project.root / "tool-a")], cwd=str(project.root),
                                env=project.env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        result = project.run(["./tool-a"])
        assert version_of(result) == "1.5", round_
        assert project.installed() == {"tool-a": "1.5", "lib-b": "2.0", "lib-d": "1.0"}
        project.cmd("reset", check=0)


def test_ctrl_c_exits_130_without_traceback(project):
    import fcntl

    lock = project.root / ".appenv" / "lock"
    lock.parent.mkdir()
    with open(lock, "w") as held:  # another appenv is building: this one waits
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen([str(project.root / "tool-a")], cwd=str(project.root),
                                env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        deadline = time.time() + 60
        while not (project.root / ".appenv" / ".gitignore").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "waiting for another appenv" in err
    assert "Traceback" not in err and out == ""
    assert version_of(project.run(["./tool-a"])) == "1.0"


@contextlib.contextmanager
def running(project, *options):
    """./tool-e started and waiting; `finish()` lets it import lib_b, and returns what it said."""
    flag = project.root / "go"
    proc = subprocess.Popen([str(project.root / "tool-e"), "--late-import", str(flag)]
                            + list(options),
                            cwd=str(project.root), env=project.env, stdout=subprocess.PIPE,
                            text=True)

    def finish():
        flag.touch()
        line = proc.stdout.readline()
        assert proc.wait(timeout=30) == 0
        return line

    try:
        assert proc.stdout.readline() == "started\n"
        yield finish
    finally:
        proc.kill()


@pytest.mark.parametrize("daemon", [False, True], ids=["holding", "closed-its-descriptors"])
def test_a_process_keeps_its_environment_across_an_update(project_factory, daemon):
    """keep = 1, and a process still runs from the old environment: it is kept, also when the
    process closed the descriptors it inherited (a daemon: /proc shows it), until it ends."""
    extra = "[tool.appenv]\nkeep = 1\n"
    project = project_factory(dependencies=["tool-e"], links=["tool-e"], extra=extra)
    with running(project, *(["--close-fds"] if daemon else [])) as finish:
        old = project.current()
        project.pyproject(["tool-a==2.0"], extra=extra)  # lib-b 1.0 -> 2.0
        project.lock()
        project.link("tool-a")
        assert version_of(project.run(["./tool-a"])) == "2.0"
        assert project.current() != old
        project.pyproject(["tool-a==1.5"], extra=extra)  # a second update
        project.lock()
        assert version_of(project.run(["./tool-a"])) == "1.5"
        assert old.exists()  # keep = 1, yet a running process holds it
        assert finish() == "late 1.0\n"  # imported lazily, after the updates
    project.pyproject(["tool-a==1.0"], extra=extra)
    project.lock()
    project.run(["./tool-a"], check=0)
    assert not old.exists()  # no longer in use: collected


def test_a_copied_project_builds_its_own_environment(project, tmp_path):
    project.run(["./tool-a"], check=0)
    copy = tmp_path / "copy"
    shutil.copytree(str(project.root), str(copy), symlinks=True)  # .appenv included: cp -a
    out = json.loads(subprocess.run([str(copy / "tool-a")], cwd=str(copy), env=project.env,
                                    capture_output=True, text=True, check=True).stdout)
    assert out["prefix"].startswith(str(copy))  # venvs do not move: built again


def test_repair_waits_while_a_process_runs_in_the_environment(project_factory):
    project = project_factory(dependencies=["tool-e"], links=["tool-e"])
    with running(project) as finish:
        env = project.current()
        (project.site_packages() / "by_hand").mkdir()
        result = project.run(["./tool-e"])
        assert result.returncode == 0 and "a running process uses it" in result.stderr
        assert (project.site_packages() / "by_hand").exists()  # not changed under it
        assert finish() == "late 1.0\n"
    version_of(project.run(["./tool-e"]))
    assert project.current() == env and not (project.site_packages() / "by_hand").exists()


def test_a_package_installed_by_hand_is_removed_on_the_next_run(project):
    project.run(["./tool-a"], check=0)
    env = project.current()
    subprocess.run([project.env["PATH"].split(":")[0] + "/uv", "pip", "install", "--python",
                    str(env / "bin" / "python"), "lib-d"], env=project.env, check=True,
                   capture_output=True)
    assert "lib-d" in project.installed()
    version_of(project.run(["./tool-a"]))
    assert project.installed() == {"tool-a": "1.0"}


def test_a_package_removed_by_hand_comes_back(project_factory):
    project = project_factory(dependencies=["tool-a==1.5"])
    project.run(["./tool-a"], check=0)
    shutil.rmtree(project.site_packages() / "lib_b")
    for info in project.site_packages().glob("lib_b-*.dist-info"):
        shutil.rmtree(info)
    version_of(project.run(["./tool-a"]))
    assert project.installed() == {"tool-a": "1.5", "lib-b": "2.0"}


def test_an_interpreter_gone_is_rebuilt(project):
    project.run(["./tool-a"], check=0)
    python = project.current() / "bin" / "python"
    python.unlink()
    python.symlink_to("/nonexistent/python3.99")  # a Python upgrade took it away
    assert version_of(project.run(["./tool-a"])) == "1.0"
    assert (project.current() / "bin" / "python").resolve().exists()


def test_no_sync_runs_the_current_environment_as_it_is(project):
    env = {"APPENV_NO_SYNC": "1"}
    assert version_of(project.run(["./tool-a"], env=env)) == "1.0"  # built: none existed
    relock(project, ["tool-a==2.0"])
    result = project.run(["./tool-a"], env=env)
    assert version_of(result) == "1.0" and result.stderr == ""  # stale, used as it is
    assert version_of(project.run(["./tool-a"])) == "2.0"


def test_no_sync_prefers_the_environment_of_the_lock_when_it_is_there(project):
    lock_a = (project.root / "uv.lock").read_text()
    pyproject_a = (project.root / "pyproject.toml").read_text()
    project.run(["./tool-a"], check=0)
    relock(project, ["tool-a==2.0"])
    project.run(["./tool-a"], check=0)  # current: B
    (project.root / "uv.lock").write_text(lock_a)  # back on A, whose environment is kept
    (project.root / "pyproject.toml").write_text(pyproject_a)
    assert version_of(project.run(["./tool-a"], env={"APPENV_NO_SYNC": "1"})) == "1.0"


def test_reset_keeps_an_environment_a_process_runs_in(project_factory):
    project = project_factory(dependencies=["tool-e"], links=["tool-e"])
    project.run(["./tool-e"], env={"APPENV_GROUPS": ""}, check=0)  # a second env
    with running(project) as finish:
        used = project.current()
        assert len(project.environments()) == 2
        report = json.loads(project.cmd("status", "--json", check=0).stdout)
        assert {e["fingerprint"]: e["in_use"] for e in report["environments"]} == {
            key: key == used.name for key in project.environments()}
        assert (project.root / ".appenv" / "pyproject").is_dir()
        result = project.cmd("reset", check=0)
        assert "kept 1 environment in use" in result.stderr and str(used) in result.stderr
        assert project.environments() == [used.name] and project.current() == used
        assert finish() == "late 1.0\n"
    result = project.cmd("reset", check=0)
    assert "kept" not in result.stderr and "removed the environments in" in result.stderr
    assert project.environments() == []
    assert not (project.root / ".appenv" / "current").exists()
    assert not (project.root / ".appenv" / "pyproject").exists()  # the memos go too
    assert "no environments in" in project.cmd("reset", check=0).stderr  # nothing left
    assert (project.root / "uv.lock").exists()
    assert version_of(project.run(["./tool-e"])) == "1.0"  # and everything is built again


def test_a_partial_prepare_leaves_a_ready_environment_alone(project):
    path = project.cmd("prepare", check=0).stdout.strip()
    result = project.cmd("prepare", env={"APPENV_UV": "/nonexistent/uv"})
    assert result.stdout.strip() == path  # ready: no uv needed
    sentinel = os.path.join(path, "sentinel")
    open(sentinel, "w").close()
    result = project.cmd("prepare", "--no-install-project", env={"APPENV_VERBOSE": "1"}, check=0)
    assert result.stdout.strip() == path and "running" not in result.stderr  # no uv
    assert os.path.exists(sentinel)  # not discarded and built again
    assert version_of(project.run(["./tool-a"])) == "1.0"


OPTIONAL = """
[project.optional-dependencies]
more = ["lib-d"]
[dependency-groups]
tools = ["tool-c"]
dev = ["tool-e"]
"""


def test_prepare_with_an_extra_builds_what_the_variables_select(project_factory):
    extra = OPTIONAL + '[tool.appenv]\ngroups = ["tools"]\n'
    project = project_factory(extra=extra, links=["tool-a", "tool-c"])
    result = project.cmd("prepare", "--extra", "more", check=0)
    path = result.stdout.strip()
    assert "with APPENV_EXTRAS=more\n" in result.stderr  # groups: as configured
    assert project.installed(project.root / path) == {
        "tool-a": "1.0", "tool-c": "1.0", "lib-d": "1.0"}
    env = {"APPENV_EXTRAS": "more", "APPENV_VERBOSE": "1"}
    result = project.run(["./tool-c"], env=env)
    assert json.loads(result.stdout)["prefix"] == path and result.stderr == ""  # no build


def test_extras_and_groups_from_the_environment_select_the_content(project_factory):
    project = project_factory(extra=OPTIONAL, links=["tool-a", "tool-c"])
    project.run(["./tool-a"], check=0)
    assert project.installed() == {"tool-a": "1.0"}  # no extra, no group, no dev
    assert project.run(["./tool-c"]).returncode == 127
    env = {"APPENV_EXTRAS": "more", "APPENV_GROUPS": "tools"}
    assert version_of(project.run(["./tool-c"], env=env)) == "1.0"
    assert project.installed() == {"tool-a": "1.0", "tool-c": "1.0", "lib-d": "1.0"}


def unshare_works():
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0


def run_read_only(project, argv, env=None):
    """Run with the project mounted read-only in a private mount namespace."""
    root = str(project.root)
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    environ = dict(project.env, **(env or {}))
    return subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", root] + argv,
                          cwd=root, env=environ, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not unshare_works(), reason="needs root and unshare --mount for a read-only "
                    "bind mount")
def test_read_only_project(project, tmp_path):
    result = run_read_only(project, ["./tool-a"])
    assert result.returncode == 73
    assert str(project.root / ".appenv") in result.stderr
    assert "./appenv prepare" in result.stderr and "APPENV_HOME" in result.stderr
    nothing = {"XDG_CACHE_HOME": str(tmp_path / "empty"), "PIP_FIND_LINKS": "/nonexistent",
               "UV_FIND_LINKS": "/nonexistent", "APPENV_UV": "/nonexistent/uv"}
    assert run_read_only(project, ["./tool-a"], env=nothing).returncode == 73  # says so first
    home = tmp_path / "envs"
    result = run_read_only(project, ["./tool-a"], env={"APPENV_HOME": str(home)})
    assert version_of(result) == "1.0"
    path = project.cmd("prepare", check=0).stdout
    result = run_read_only(project, ["./tool-a", "ro"])
    assert version_of(result) == "1.0"  # prepared: the warm path writes nothing
    result = run_read_only(project, ["./appenv", "prepare"])  # a deploy's step, run again
    assert (result.returncode, result.stdout) == (0, path), result.stderr


def without_root_s_reach():
    """A prefix that runs a command as root without the capabilities to read and enter any
    file (setpriv), as another user would; None where that cannot be done here."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    return prefix if subprocess.run(prefix + ["true"]).returncode == 0 else None


@pytest.mark.skipif(without_root_s_reach() is None, reason="needs root and setpriv, to run "
                    "as one who cannot enter another user's directories")
def test_an_environment_whose_python_this_user_cannot_run_is_126_saying_so(project, tmp_path):
    """Built by its owner with a Python in a directory only that user may enter (pyenv's
    under /root, say): another user gets 126 with the reason, not an offer to build it."""
    private = tmp_path / "private"
    private.mkdir()
    (private / "python3").symlink_to(os.path.realpath(sys.executable))
    env = {"UV_PYTHON": str(private / "python3")}
    project.run(["./tool-a"], env=env, check=0)
    os.chown(str(private), 65534, -1)
    private.chmod(0o700)
    try:
        result = project.run(without_root_s_reach() + ["./tool-a"], env=env)
        status = project.run(without_root_s_reach() + [str(project.appenv), "status"], env=env)
    finally:
        os.chown(str(private), 0, -1)
    assert result.returncode == 126 and "Traceback" not in result.stderr, result.stderr
    assert "is built, but this user cannot run its Python {}".format(private / "python3") in \
        result.stderr
    assert "(unusable)" in status.stdout


@pytest.mark.skipif(not unshare_works(), reason="needs root and unshare --mount to hide "
                    "/etc/passwd")
def test_a_user_without_a_home_directory(project, tmp_path):
    """HOME unset and no passwd entry (a container's user): a prepared project runs without
    appenv's cache; a build, which needs it, says what to set."""
    project.run(["./tool-a"], check=0)
    (tmp_path / "passwd").write_text("")
    (tmp_path / "nsswitch.conf").write_text("passwd: files\ngroup: files\n")  # not systemd's
    script = ('mount --bind "$1/passwd" /etc/passwd && '
              'mount --bind "$1/nsswitch.conf" /etc/nsswitch.conf && shift && exec "$@"')
    env = {k: v for k, v in project.env.items() if k not in ("HOME", "XDG_CACHE_HOME")}

    def homeless(target, argv, **changes):
        return subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(tmp_path)]
                              + argv, cwd=str(target.root), env=dict(env, **changes),
                              capture_output=True, text=True, timeout=300)

    assert version_of(homeless(project, ["./tool-a"])) == "1.0"  # warm: no cache needed
    fresh = project.clone("fresh")  # a build: packaging, or uv, would come from the cache
    result = homeless(fresh, ["./tool-a"])
    assert result.returncode == 73 and "Traceback" not in result.stderr, result.stderr
    assert "has no home directory. Set HOME or XDG_CACHE_HOME." in result.stderr
    assert result.stdout == ""
    assert version_of(homeless(fresh, ["./tool-a"], HOME=str(tmp_path / "home"))) == "1.0"


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_the_warm_path_writes_nothing_and_runs_no_subprocess(project, tmp_path):
    project.run(["./tool-a"], check=0)
    project.run(["./tool-a"], check=0)  # bytecode of the launcher cached
    log = tmp_path / "trace"
    result = project.run(["strace", "-f", "-o", str(log), "-e",
                          "trace=execve,openat,mkdir,rename,unlink,creat", "./tool-a"])
    version_of(result)
    lines = log.read_text().splitlines()
    # One process from start to end: sh, python3, then the binary (and the interpreter of its
    # script), each replacing the last; the launcher forks nothing.
    assert len({line.split()[0] for line in lines}) == 1, lines
    assert [line for line in lines if "execve(" in line and "= 0" in line][-1]
    writes = [line for line in lines if "O_WRONLY" in line or "O_RDWR" in line
              or "O_CREAT" in line or "mkdir(" in line or "rename(" in line or "unlink(" in line]
    assert [line for line in writes if "/dev/" not in line] == []


def test_the_warm_path_imports_only_what_it_needs(project):
    """SPEC 5: the warm path imports no `os` (2 ms), subprocess or TOML; only fcntl, for the
    lock a running binary holds, and _blake2, for the fingerprint."""
    project.run(["./tool-a"], check=0)
    project.run(["./tool-a"], check=0)  # the launcher's bytecode cached
    assert modules_at_exec(project) <= {"fcntl", "_blake2", "marshal", "posix"}


def test_a_fresh_clone_builds_without_importing_os(project, tmp_path):
    """SPEC 11: the first run of files built before on this machine recalls the plan, runs
    `uv sync` and marks the environment ready with no more imports than the warm path."""
    project.run(["./tool-a"], check=0)
    project.run(["./tool-a"], check=0)  # the plan remembered, the launcher's bytecode cached
    fresh = project.clone("fresh")
    assert modules_at_exec(fresh) <= {"fcntl", "_blake2", "marshal", "posix"}
    assert version_of(fresh.run(["./tool-a"])) == "1.0"  # it built, and marked ready
    assert len(os.listdir(str(fresh.root / ".appenv" / "envs"))) == 1


def modules_at_exec(project):
    """The modules the launcher imported beyond Python's own start, when it was about to exec
    ./tool-a: sh's lines run by a python3 whose execve reports instead of replacing it."""
    # What sh passes to Python, from a python3 that prints its fourth argument (after -c).
    fake = project.root / "fake-bin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/sh\nprintf %s "$4"\n')
    (fake / "python3").chmod(0o755)
    top = project.run(["./tool-a"], env={"PATH": "{}:{}".format(fake, project.env["PATH"])},
                      check=0).stdout
    shutil.rmtree(str(fake))
    spy = ("import posix, sys\n"
           "def execve(path, argv, environ):\n"
           "    sys.stdout.write(' '.join(sorted(sys.modules)))\n"
           "    sys.stdout.flush()\n"
           "    posix._exit(0)\n"
           "posix.execve = execve\n")
    # no interpreter to remember (the first two arguments), then the launcher as sh names it
    result = project.run(["python3", "-I", "-S", "-c", spy + top, "", "", "./tool-a"], check=0)
    loaded = set(result.stdout.split())
    start = project.run(["python3", "-I", "-S", "-c",
                         "import sys; print(' '.join(sys.modules))"], check=0)
    assert "fcntl" in loaded  # the spy ran when the launcher was about to exec the binary
    return loaded - set(start.stdout.split())


def test_a_fresh_clone_goes_straight_to_uv_sync(project, tmp_path):
    """What a build needs from pyproject.toml and uv is remembered for the same files."""
    env, log = logged_uv(project, tmp_path)
    wrapper = tmp_path / "bin" / "uv"
    project.cmd("update-lockfile", "--check", env=env, check=0)  # the plan worked out
    log.write_text("")
    assert version_of(project.run(["./tool-a"], env=env)) == "1.0"
    assert commands(log) == ["sync"]  # the plan of update-lockfile, remembered
    first = project.clone("clone-1")
    assert version_of(first.run(["./tool-a"], env=env)) == "1.0"
    assert commands(log) == ["sync", "sync"]
    wrapper.write_text(wrapper.read_text() + "\n")  # another uv: checked again
    second = project.clone("clone-2")
    assert version_of(second.run(["./tool-a"], env=env)) == "1.0"
    assert commands(log)[2:] == ["--version", "sync"]
    wrapper.chmod(0o700)  # only its mode changed: checked again too
    assert version_of(project.clone("clone-2b").run(["./tool-a"], env=env)) == "1.0"
    assert commands(log)[4:] == ["--version", "sync"]
    log.write_text("")
    third = project.clone("clone-3")
    third.pyproject(["tool-a>=1.0,<2"])  # another pyproject.toml: worked out again
    third.lock("--upgrade")
    assert version_of(third.run(["./tool-a"], env=env)) == "1.5"
    assert commands(log) == ["sync"]  # but the uv found is remembered: no --version
    third.lock("--upgrade-package", "tool-a==1.0")  # another uv.lock, the same pyproject.toml
    fourth = third.clone("clone-4")
    assert version_of(fourth.run(["./tool-a"], env=env)) == "1.0"
    assert commands(log)[1:] == ["sync"]  # a plan does not depend on uv.lock


def test_a_failing_uv_sync_keeps_its_status_with_no_library_at_hand(project, tmp_path):
    """When `uv sync` fails, appenv looks whether uv.lock is valid TOML, to say so (65). It
    does that without packaging, and nothing it cannot find replaces uv's own status."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    project.run(["./tool-a"], env=env, check=0)  # the plan remembered, the libraries installed
    shutil.rmtree(str(tmp_path / "cache" / "appenv" / "lib"), ignore_errors=True)
    fresh = project.clone("fresh")
    lock = (fresh.root / "uv.lock").read_text()
    (fresh.root / "uv.lock").write_text(lock.replace("tool_a-1.0-", "tool_a-0.9-"))  # no such
    result = fresh.run(["./tool-a"], env=env)
    assert result.returncode not in (0, 65, 69), result.stderr
    assert "building the environment" in result.stderr and "installing" not in result.stderr


def test_a_remembered_plan_still_checks_uv_lock(project):
    """A plan is keyed by pyproject.toml: a missing or conflicted uv.lock with a plan at hand
    is still 66 or 65, with the words of the error table and nothing half-made."""
    project.run(["./tool-a"], check=0)  # the plan remembered
    fresh = project.clone("fresh")
    (fresh.root / "uv.lock").unlink()
    fresh.refused(["./tool-a"], 66, "No uv.lock found. Run: ./appenv update-lockfile")
    assert not (fresh.root / ".appenv").exists()
    text = (project.root / "uv.lock").read_text()
    (fresh.root / "uv.lock").write_text("<<<<<<< HEAD\n" + text + "=======\n" + text
                                        + ">>>>>>> feature\n")
    result = fresh.run(["./tool-a"])
    assert result.returncode == 65 and result.stdout == ""
    assert "merge conflict" in result.stderr and "./appenv update-lockfile" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(str(fresh.root / ".appenv" / "envs")) == []  # nothing marked, nothing left


def test_a_new_pyproject_toml_is_read_while_uv_syncs_and_checked_before_ready(project, tmp_path):
    """A pyproject.toml not built before: uv starts syncing with the plan of the current
    environment while appenv reads pyproject.toml. Where the two differ ([tool.appenv]
    extras), that sync is stopped, and the environment holds exactly what was asked."""
    env, log = logged_uv(project, tmp_path)
    assert version_of(project.run(["./tool-a"], env=env)) == "1.0"
    log.write_text("")
    relock(project, ["tool-a==1.5"])  # a dependency edited: the same options
    assert version_of(project.run(["./tool-a"], env=env)) == "1.5"
    assert commands(log) == ["sync"]
    log.write_text("")
    project.pyproject(["tool-a==1.5"], extra='[project.optional-dependencies]\nextra = '
                      '["lib-d"]\n[tool.appenv]\nextras = ["extra"]\n')
    project.lock()
    assert version_of(project.run(["./tool-a"], env=env)) == "1.5"
    # the guess's sync, stopped (unless stopped before its wrapper could log it), then the plan's
    syncs = [line for line in log.read_text().splitlines() if line.startswith("sync")]
    assert len(syncs) in (1, 2) and "--extra extra" in syncs[-1]
    assert all("--extra" not in line for line in syncs[:-1])
    assert "lib-d" in project.installed() and len(project.environments()) == 3
    clone = project.clone("clone")  # no environment: the plan worked out last is the guess
    relock(clone, ["tool-a>=1.0,<1.2"])  # not built before, and without the extra
    log.write_text("")
    assert version_of(clone.run(["./tool-a"], env=env)) == "1.0"
    syncs = [line for line in log.read_text().splitlines() if line.startswith("sync")]
    assert len(syncs) in (1, 2) and "--extra" not in syncs[-1]
    assert all("--extra extra" in line for line in syncs[:-1])
    assert "lib-d" not in clone.installed() and "lib-b" not in clone.installed()
    (project.root / "pyproject.toml").write_text("[project\n")  # not TOML: 65, nothing ready
    result = project.run(["./tool-a"], env=env)
    assert result.returncode == 65 and "Traceback" not in result.stderr
    assert "lib-d" in project.installed()  # current is as it was


@pytest.mark.parametrize("name", ["uv.lock", "pyproject.toml"])
def test_a_fifo_or_a_device_is_66_and_never_blocks(project, tmp_path, name):
    """Only regular files are read as uv.lock and pyproject.toml (links followed): a FIFO
    would block the warm path forever, /dev/zero never end. Each is 66 saying what it is."""
    project.run(["./tool-a"], check=0)  # ready: the warm path is what meets the FIFO first
    path = project.root / name
    path.unlink()
    os.mkfifo(str(path))
    for argv in (["./tool-a"], [project.appenv, "prepare"], [project.appenv, "python", "-V"],
                 [project.appenv, "update-lockfile"]):
        result = project.run(argv, timeout=60)
        assert result.returncode == 66, (argv, result.stderr)
        assert "{} is a FIFO (named pipe), not a regular file".format(path) in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    path.unlink()
    path.symlink_to("/dev/zero")
    result = project.run(["./tool-a"], timeout=60)
    assert result.returncode == 66 and "is a character device" in result.stderr
    path.unlink()
    path.mkdir()  # Python's open() refuses a directory before appenv can say what it is
    for argv in (["./tool-a"], [project.appenv, "prepare"], [project.appenv, "list"],
                 [project.appenv, "update-lockfile"], [project.appenv, "update-lockfile",
                                                       "--check"]):
        result = project.run(argv, timeout=60)
        assert result.returncode == 66, (argv, result.stderr)
        assert "{} is a directory, not a regular file".format(path) in result.stderr


def test_a_member_s_pyproject_toml_as_a_fifo_is_66_and_never_blocks(project_factory):
    """The members' pyproject.toml are read as the root's are, by appenv and, through it, by
    uv: a FIFO there is 66 for every command, with the plan remembered or not."""
    from test_lifecycle import WORKSPACE

    project = project_factory(dependencies=[], links=["tool-a"], lock=False,
                              extra=WORKSPACE + 'packages = ["member-a"]\n')
    member = project.root / "packages" / "member-a" / "pyproject.toml"
    project.write("packages/member-a/pyproject.toml",
                  '[project]\nname = "member-a"\nversion = "0.1"\nrequires-python = ">=3.8"\n'
                  'dependencies = ["tool-a==1.0"]\n')
    project.lock()
    project.run(["./tool-a"], check=0)  # ready, the plan and the members remembered
    member.unlink()
    os.mkfifo(str(member))
    for argv in (["./tool-a"], [project.appenv, "update-lockfile"],
                 [project.appenv, "update-lockfile", "--check"], [project.appenv, "prepare"],
                 [project.appenv, "run", "true"]):
        result = project.run(argv, timeout=60)
        assert result.returncode == 66, (argv, result.stderr)
        assert "{} is a FIFO (named pipe), not a regular file".format(member) in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_relative_appenv_home_is_taken_from_the_project_root(project, tmp_path):
    """As uv takes UV_PROJECT_ENVIRONMENT: the same environments from any working directory.
    A place that cannot hold environments is 73 naming it, not a traceback."""
    env = {"APPENV_HOME": "shared-envs"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd in (project.root, elsewhere):
        assert version_of(project.run([project.root / "tool-a"], cwd=cwd, env=env)) == "1.0"
    homes = list((project.root / "shared-envs").iterdir())
    assert len(homes) == 1 and len(list((homes[0] / "envs").iterdir())) == 1
    assert not (elsewhere / "shared-envs").exists()
    result = project.refused(["./tool-a"], 73, "/proc/self", env={"APPENV_HOME": "/proc/self"})
    assert "Traceback" not in result.stderr


def test_a_console_script_removed_or_edited_by_hand_is_repaired(project):
    """A binary of a ready environment deleted, or changed in place, is noticed as cheaply as
    a removed package (a stat), and the environment built again, exactly."""
    project.run(["./tool-a"], check=0)
    script = project.current() / "bin" / "tool-a"
    script.unlink()
    assert version_of(project.run(["./tool-a"])) == "1.0"  # not 127: rebuilt
    script = project.current() / "bin" / "tool-a"
    original = script.read_text()
    time.sleep(0.01)
    script.write_text(original.replace("import", "import os; os._exit(3)\nimport", 1))
    assert version_of(project.run(["./tool-a"])) == "1.0"
    assert (project.current() / "bin" / "tool-a").read_text() == original
    result = project.run([project.appenv, "status", "--json"], check=0)
    assert json.loads(result.stdout)["environment"]["state"] == "ready"


def in_private_mount(project, script, env):
    """SCRIPT (sh) run in a mount namespace of its own, as root; skipped where not permitted."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no private mount namespace here (needs root): {}".format(
            probe.stderr.decode().strip()))
    return project.run(["unshare", "-m", "sh", "-c", script], env=env, timeout=120)


def test_a_disk_that_fills_as_uv_finishes_is_73_and_the_next_run_works(project, tmp_path):
    """ENOSPC while appenv marks the environment ready (a uv wrapper fills a small tmpfs right
    after `uv sync`), and on a disk full from the start: 73 saying it is out of space, no
    traceback, nothing ready; once space is freed, the next run works."""
    uv = project.env["PATH"].split(":")[0] + "/uv"
    disk = tmp_path / "disk"
    disk.mkdir()
    wrapper = tmp_path / "uv-then-fill"
    wrapper.write_text('#!/bin/sh\n"{}" "$@"; s=$?\n[ "$1" = sync ] && dd if=/dev/zero of="{}/fill"'
                       ' bs=1M 2>/dev/null\nexit $s\n'.format(uv, disk))
    wrapper.chmod(0o755)
    script = """
    mount -t tmpfs -o size=24m tmpfs "{disk}" || exit 99
    ./tool-a > out-1; echo "status $?"
    ls "{disk}"/*/envs/*/appenv-ready 2>/dev/null && echo "ready after the fault"
    rm "{disk}/fill"
    APPENV_UV="{uv}" ./tool-a > out-2; echo "status $?"
    dd if=/dev/zero of="{disk}/fill" bs=1M 2>/dev/null; APPENV_HOME="{disk}/other" ./tool-a
    echo "status $?"
    """.format(disk=disk, uv=uv)
    result = in_private_mount(project, script, {"APPENV_HOME": str(disk),
                                                "APPENV_UV": str(wrapper)})
    lines = result.stdout.split("\n")
    assert lines[0] == "status 73" and "ready after the fault" not in result.stdout, result.stderr
    assert "is out of space" in result.stderr and "Traceback" not in result.stderr
    assert "as the owner" not in result.stderr.split("\n")[-2]  # not the permission advice
    assert lines[1] == "status 0" and json.loads((project.root / "out-2").read_text())
    assert lines[2] == "status 73" and result.stderr.count("is out of space") == 2


FAILING_DISK = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* rename() and renameat() of a file to .../appenv-ready fail with errno FAIL_READY_ERRNO. */
static int failing(const char *path) {
    const char *e = getenv("FAIL_READY_ERRNO");
    size_t n = strlen(path);
    if (e && n >= 13 && strcmp(path + n - 13, "/appenv-ready") == 0) {
        errno = atoi(e);
        return 1;
    }
    return 0;
}
int rename(const char *old, const char *new) {
    static int (*real)(const char *, const char *);
    if (failing(new)) return -1;
    if (!real) real = dlsym(RTLD_NEXT, "rename");
    return real(old, new);
}
int renameat(int od, const char *old, int nd, const char *new) {
    static int (*real)(int, const char *, int, const char *);
    if (failing(new)) return -1;
    if (!real) real = dlsym(RTLD_NEXT, "renameat");
    return real(od, old, nd, new);
}
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="needs gcc to build an LD_PRELOAD shim")
@pytest.mark.parametrize("code, words", [(errno.EIO, "is failing (input/output error"),
                                         (errno.EDQUOT, "is out of space (Disk quota exceeded)")])
def test_a_disk_that_fails_or_a_quota_as_the_build_ends_is_73(project, tmp_path, code, words):
    """EIO or EDQUOT where appenv marks the environment ready (an LD_PRELOAD shim makes that
    rename fail, as a failing disk or a full quota would): 73 saying which, nothing ready; the
    next run, on a sound disk, works."""
    source = tmp_path / "failing.c"
    source.write_text(FAILING_DISK)
    shim = tmp_path / "failing.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(shim), str(source), "-ldl"], check=True)
    result = project.run(["./tool-a"], env={"LD_PRELOAD": str(shim),
                                            "FAIL_READY_ERRNO": str(code)})
    assert result.returncode == 73 and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not list(project.root.glob(".appenv/envs/*/appenv-ready"))
    assert version_of(project.run(["./tool-a"])) == "1.0"


def test_a_lock_switched_and_back_during_a_build_is_built_again(project, tmp_path):
    """A -> B before uv reads uv.lock, back to A before uv finishes: the content is A's again,
    the environment holds B's packages. It is not marked ready as A's: appenv builds again."""
    lock_a = (project.root / "uv.lock").read_text()
    relock(project, ["tool-a==2.0"])
    lock_b = (project.root / "uv.lock").read_text()
    relock(project, ["tool-a==1.0"])
    uv = project.env["PATH"].split(":")[0] + "/uv"
    step = tmp_path / "step"
    wrapper = tmp_path / "slow-uv"
    wrapper.write_text("""#!/bin/sh
if [ "$1" = sync ] && [ ! -e "{step}.once" ]; then
  touch "{step}.once" "{step}.started"
  while [ ! -e "{step}.go" ]; do sleep 0.02; done
  "{uv}" "$@"; s=$?
  touch "{step}.synced"
  while [ ! -e "{step}.end" ]; do sleep 0.02; done
  exit $s
fi
exec "{uv}" "$@"
""".format(step=step, uv=uv))
    wrapper.chmod(0o755)
    env = dict(project.env, APPENV_UV=str(wrapper))
    run = subprocess.Popen([str(project.root / "tool-a")], cwd=str(project.root), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for(name):
        deadline = time.time() + 60
        while not os.path.exists("{}.{}".format(step, name)):
            assert time.time() < deadline and run.poll() is None, run.communicate()
            time.sleep(0.02)

    wait_for("started")
    (project.root / "uv.lock").write_text(lock_b)  # a checkout of B: uv reads it
    open("{}.go".format(step), "w").close()
    wait_for("synced")
    (project.root / "uv.lock").write_text(lock_a)  # and back to A, the same bytes as before
    open("{}.end".format(step), "w").close()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert json.loads(out)["version"] == "1.0" and "changed during the build" in err
    assert project.installed()["tool-a"] == "1.0"
    assert version_of(project.run(["./tool-a"])) == "1.0"


def test_another_tools_table_builds_nothing_and_a_dependency_does(project, tmp_path):
    """What `uv sync` installs does not depend on [tool.ruff] or [tool.pytest.ini_options]:
    editing them runs no uv and takes no `keep` slot. A dependency, [tool.uv] or the build
    backend's own table does count."""
    env, log = logged_uv(project, tmp_path)
    assert version_of(project.run(["./tool-a"], env=env)) == "1.0"
    log.write_text("")
    path = project.root / "pyproject.toml"
    for table in ("[tool.ruff]\nline-length = 99\n", "[tool.pytest.ini_options]\naddopts = '-x'\n"):
        path.write_text(path.read_text() + table)
        assert version_of(project.run(["./tool-a"], env=env)) == "1.0"
        assert version_of(project.run(["./tool-a"], env=env)) == "1.0"
    assert commands(log) == [] and len(project.environments()) == 1
    assert version_of(project.clone("clone").run(["./tool-a"], env=env)) == "1.0"
    assert commands(log) == ["sync"]  # a fresh clone builds, from the remembered plan's digest
    log.write_text("")
    path.write_text(path.read_text() + '[tool.uv]\nconstraint-dependencies = ["tool-a<3"]\n')
    project.lock()
    assert version_of(project.run(["./tool-a"], env=env)) == "1.0"
    assert commands(log) == ["sync"] and len(project.environments()) == 2
    log.write_text("")
    relock(project, ["tool-a==1.5"])
    assert version_of(project.run(["./tool-a"], env=env)) == "1.5" and commands(log) == ["sync"]
    build = '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    assert "hatch" in pyproject_digest_tables(project, build + "[tool.hatch.x]\ny = 1\n")


def test_a_fresh_clone_s_new_pyproject_toml_is_built_once_and_other_tables_still_count_not(
        project, tmp_path):
    """A home's first build takes a pyproject.toml new to this machine as it is, so that uv
    starts before appenv has parsed it; another tool's table edited afterwards still builds
    nothing, and neither does going back to a file built before."""
    env, log = logged_uv(project, tmp_path)
    assert version_of(project.run(["./tool-a"], env=env)) == "1.0"  # the plan, remembered
    clone = project.clone("clone")
    log.write_text("")
    path = clone.root / "pyproject.toml"
    first = path.read_text() + "# new to this machine\n"
    path.write_text(first)
    assert version_of(clone.run(["./tool-a"], env=env)) == "1.0" and commands(log) == ["sync"]
    path.write_text(first + "[tool.ruff]\nline-length = 99\n")
    assert version_of(clone.run(["./tool-a"], env=env)) == "1.0" and commands(log) == ["sync"]
    relock(clone, ["tool-a==1.5"])
    log.write_text("")
    assert version_of(clone.run(["./tool-a"], env=env)) == "1.5" and commands(log) == ["sync"]
    path.write_text(path.read_text() + "[tool.black]\n")
    assert version_of(clone.run(["./tool-a"], env=env)) == "1.5"
    (clone.root / "uv.lock").write_text((project.root / "uv.lock").read_text())
    path.write_text(first + "[tool.isort]\n")
    assert version_of(clone.run(["./tool-a"], env=env)) == "1.0"
    assert commands(log) == ["sync"] and len(clone.environments()) == 2


def pyproject_digest_tables(project, text):
    """The [tool.X] tables that count for TEXT as pyproject.toml: those whose digest changes
    when the table does."""
    import importlib.util

    spec = importlib.util.spec_from_loader("appenv_module", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = project.appenv
    exec(compile(open(project.appenv).read(), project.appenv, "exec"), module.__dict__)
    first, second = project.root / "a.toml", project.root / "b.toml"
    first.write_text(text)
    second.write_text(text.replace("y = 1", "y = 2"))
    counted = module.pyproject_digest(str(first)) != module.pyproject_digest(str(second))
    first.unlink()
    second.unlink()
    return ["hatch"] if counted else []


def test_a_damaged_pyproject_memo_is_worked_out_again(project):
    """An empty or garbled memo of what counts in pyproject.toml (a power loss) is not
    trusted: two different pyproject.toml files never share an environment through it."""
    assert version_of(project.run(["./tool-a"])) == "1.0"
    for memo in (project.root / ".appenv" / "pyproject").iterdir():
        memo.write_text("")
    relock(project, ["tool-a==1.5"])
    assert version_of(project.run(["./tool-a"])) == "1.5"
    for memo in (project.root / ".appenv" / "pyproject").iterdir():
        memo.write_text("")
    relock(project, ["tool-a==1.0"])
    assert version_of(project.run(["./tool-a"])) == "1.0"


def test_no_sync_after_an_edit_runs_the_current_environment(project, tmp_path):
    env, log = logged_uv(project, tmp_path)
    assert version_of(project.run(["./tool-a"], env=env)) == "1.0"
    log.write_text("")
    relock(project, ["tool-a==1.5"])
    result = project.run(["./tool-a"], env=dict(env, APPENV_NO_SYNC="1"))
    assert version_of(result) == "1.0" and commands(log) == []


def test_status_with_a_fifo_as_pyproject_toml_does_not_hang(project):
    project.run(["./tool-a"], check=0)
    path = project.root / "pyproject.toml"
    path.unlink()
    os.mkfifo(str(path))
    result = project.cmd("status", timeout=60)
    assert "FIFO" in result.stdout + result.stderr and "Traceback" not in result.stderr
