"""Locking: frozen runs, update-lockfile and its summary, run, uv, and the lock's errors."""

import json

import pytest


def test_missing_lock_is_66_with_seed_004_words(project_factory):
    project = project_factory(lock=False)
    for argv in (["./tool-a"], ["./appenv", "prepare"], ["./appenv", "python", "-c", "1"]):
        result = project.run(argv)
        assert result.returncode == 66
        assert "No uv.lock found. Run: ./appenv update-lockfile" in result.stderr
        assert result.stdout == ""
    assert not (project.root / "uv.lock").exists()


def test_missing_pyproject_is_66_and_says_where(project_factory):
    project = project_factory(lock=False)
    (project.root / "pyproject.toml").unlink()
    result = project.run(["./tool-a"])
    assert result.returncode == 66
    assert str(project.root) in result.stderr and "init" in result.stderr
    (project.root / "requirements.txt").write_text("tool-a\n")
    result = project.run(["./tool-a"])
    assert result.returncode == 66 and "migrate" in result.stderr


@pytest.mark.parametrize("name", ["pyproject.toml", "uv.lock"])
def test_invalid_toml_is_65_with_the_file_and_line(project, name):
    path = project.root / name
    path.write_text(path.read_text() + "\nthis is = = not toml\n")
    result = project.run(["./tool-a"])
    assert result.returncode == 65, result.stderr
    assert name in result.stderr and "line" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["pyproject.toml", "uv.lock"])
def test_merge_conflict_is_65_with_the_recipe(project, name):
    path = project.root / name
    text = path.read_text()
    path.write_text("<<<<<<< HEAD\n" + text + "=======\n" + text + ">>>>>>> feature\n")
    result = project.run(["./tool-a"])
    assert result.returncode == 65
    assert "merge conflict" in result.stderr
    assert "./appenv update-lockfile" in result.stderr and "commit uv.lock" in result.stderr


def conflicted(ours, theirs):
    """A file as git leaves it after a merge whose two sides changed it differently."""
    import difflib

    lines = []
    matcher = difflib.SequenceMatcher(None, ours.splitlines(True), theirs.splitlines(True))
    a, b = ours.splitlines(True), theirs.splitlines(True)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            lines += a[i1:i2]
        else:
            lines += (["<<<<<<< HEAD\n"] + a[i1:i2] + ["=======\n"] + b[j1:j2]
                      + [">>>>>>> feature\n"])
    return "".join(lines)


def test_the_merge_conflict_recipe_works(project_factory):
    """Seed 004: resolve pyproject.toml, run update-lockfile, commit uv.lock."""
    project = project_factory(dependencies=["tool-a==1.5", "tool-c"])
    ours = (project.root / "uv.lock").read_text()
    project.pyproject(["tool-a==2.0", "lib-d"])
    theirs = project.lock()
    (project.root / "uv.lock").write_text(conflicted(ours, theirs))
    assert project.run(["./tool-a"]).returncode == 65
    for option in ("--check", "--dry-run"):
        result = project.cmd("update-lockfile", option)
        assert result.returncode == (1 if option == "--check" else 65), result.stderr
        assert "merge conflict" in result.stderr
    # The user resolves pyproject.toml: tool-a from either side is fine, and both extras.
    project.pyproject(["tool-a>=1.5", "tool-c", "lib-d"])
    result = project.cmd("update-lockfile", check=0)
    assert "merge conflict" in result.stderr
    assert "added      lib-d 1.0" in result.stderr and "tool-a" not in result.stderr
    lock = (project.root / "uv.lock").read_text()
    assert "<<<<<<<" not in lock and "=======" not in lock
    assert project.cmd("update-lockfile", "--check").returncode == 0
    # our side's tool-a 1.5 is kept, not upgraded to their 2.0 or the index's newest
    assert json.loads(project.run(["./tool-a"], check=0).stdout)["version"] == "1.5"


def test_a_failed_relock_leaves_the_conflicted_lock_as_it_was(project_factory):
    project = project_factory(dependencies=["tool-a==1.5"])
    ours = (project.root / "uv.lock").read_text()
    project.pyproject(["tool-a==2.0"])
    text = conflicted(ours, project.lock())
    (project.root / "uv.lock").write_text(text)
    project.pyproject(["tool-a==9.9"])  # resolved badly: no such version
    result = project.cmd("update-lockfile")
    assert result.returncode == 1 and "updating uv.lock failed" in result.stderr
    assert (project.root / "uv.lock").read_text() == text


def test_frozen_never_writes_the_lock(project):
    before = (project.root / "uv.lock").read_bytes()
    project.pyproject(["tool-a==2.0"])  # pyproject changed, lock not updated
    out = json.loads(project.run(["./tool-a"], check=0).stdout)
    assert out["version"] == "1.0"  # the lock as it is
    assert project.cmd("prepare", check=0).stdout.strip()
    assert (project.root / "uv.lock").read_bytes() == before


def test_update_lockfile_summarises_each_change(project_factory):
    project = project_factory(dependencies=["tool-a==2.0", "lib-d"])
    project.pyproject(["tool-a==1.5", "tool-c"])
    result = project.cmd("update-lockfile", check=0)
    err = result.stderr
    assert "added      tool-c 1.0" in err
    assert "removed    lib-d 1.0" in err
    assert "downgraded tool-a 2.0 -> 1.5" in err
    assert "downgraded lib-b 2.0 -> 1.0" not in err  # lib-b stays at 2.0: still allowed
    assert result.stdout == ""
    project.pyproject(["tool-a", "tool-c"])
    err = project.cmd("update-lockfile", "--upgrade-package", "tool-a", check=0).stderr
    assert "upgraded   tool-a 1.5 -> 2.0" in err
    assert "no package changed" in project.cmd("update-lockfile", check=0).stderr


def test_update_lockfile_creates_a_missing_lock(project_factory):
    project = project_factory(lock=False)
    result = project.cmd("update-lockfile", "--check")
    assert result.returncode == 1 and "No uv.lock found" in result.stderr
    assert not (project.root / "uv.lock").exists()
    result = project.cmd("update-lockfile", check=0)
    assert "added      tool-a 1.0" in result.stderr
    assert "demo" not in result.stderr  # the project itself: not pinned by the lock
    assert (project.root / "uv.lock").exists()
    assert json.loads(project.run(["./tool-a"], check=0).stdout)["version"] == "1.0"


def test_update_lockfile_upgrade_pins_a_version(project_factory):
    project = project_factory(dependencies=["tool-a"])
    lock = (project.root / "uv.lock").read_text()
    assert 'version = "2.0"' in lock
    err = project.cmd("update-lockfile", "--upgrade-package", "tool-a==1.0", check=0).stderr
    assert "downgraded tool-a 2.0 -> 1.0" in err
    err = project.cmd("update-lockfile", "--upgrade", check=0).stderr
    assert "upgraded   tool-a 1.0 -> 2.0" in err


def test_update_lockfile_check(project):
    assert project.cmd("update-lockfile", "--check").returncode == 0
    project.pyproject(["tool-a==2.0"])
    before = (project.root / "uv.lock").read_bytes()
    result = project.cmd("update-lockfile", "--check")
    assert result.returncode == 1
    assert "out of date" in result.stderr and "./appenv update-lockfile" in result.stderr
    assert (project.root / "uv.lock").read_bytes() == before


def test_update_lockfile_dry_run_writes_nothing(project):
    project.pyproject(["tool-a==2.0"])
    before = (project.root / "uv.lock").read_bytes()
    result = project.cmd("update-lockfile", "--dry-run", check=0)
    assert "tool-a" in result.stderr and "v2.0" in result.stderr  # uv's own report
    assert "not written" in result.stderr
    assert (project.root / "uv.lock").read_bytes() == before


def test_update_lockfile_failure_keeps_uv_s_message_and_status(project):
    project.pyproject(["tool-a==9.9"])
    result = project.cmd("update-lockfile")
    assert result.returncode == 1
    assert "tool-a" in result.stderr and "updating uv.lock failed" in result.stderr


def test_run_is_uv_run_in_the_dev_environment(project_factory, tmp_path):
    project = project_factory(extra='[dependency-groups]\ndev = ["tool-c"]\n')
    result = project.cmd("run", "tool-c", "x", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["tool"] == "tool-c" and out["cwd"] == str(tmp_path)
    assert out["prefix"] == str(project.root / ".venv")
    # options pass through to uv run: inexact by default, --exact removes what --no-dev drops
    assert project.cmd("run", "--no-dev", "tool-c").returncode == 0
    assert project.cmd("run", "--no-dev", "--exact", "tool-c").returncode != 0
    status = project.cmd("run", "--with", "tool-e", "tool-e", "--exit", "7").returncode
    assert status == 7


def test_run_is_unfrozen_and_locked_fails_when_outdated(project):
    project.pyproject(["tool-a==2.0"])
    result = project.cmd("run", "--locked", "tool-a")
    assert result.returncode == 1
    assert "out of date" in result.stderr and "./appenv update-lockfile" in result.stderr
    out = json.loads(project.cmd("run", "tool-a", check=0).stdout)
    assert out["version"] == "2.0"
    assert 'version = "2.0"' in (project.root / "uv.lock").read_text()


def test_uv_passes_through_at_the_project_root(project, tmp_path):
    result = project.cmd("uv", "--version", cwd=tmp_path, check=0)
    assert result.stdout.startswith("uv ")
    result = project.cmd("uv", "tree", "--frozen", cwd=tmp_path, check=0)
    assert "tool-a v1.0" in result.stdout
    assert project.cmd("uv", "no-such-subcommand").returncode == 2


def test_python_is_the_production_environment_s(project):
    result = project.cmd("python", "-c", "import sys, tool_a; print(sys.prefix, tool_a.VERSION)",
                         check=0)
    prefix, version = result.stdout.split()
    assert prefix.startswith(str(project.root / ".appenv" / "envs")) and version == "1.0"


def test_prepare_prints_the_environment_path_only(project):
    result = project.cmd("prepare", check=0)
    path = result.stdout.strip()
    assert result.stdout == path + "\n"
    assert (project.root / ".appenv" / "envs").exists() and path.startswith(str(project.root))
    out = json.loads(project.run([path + "/bin/tool-a"], check=0).stdout)
    assert out["version"] == "1.0"
