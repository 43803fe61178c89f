"""What a team does every day: add and remove a tool with its link, see what is outdated, list
the binaries, mistype a name, lock after a merge, and ask for less or more output."""

import json
import os
import shutil
import subprocess

import pytest

try:
    import tomllib
except ImportError:
    import tomli as tomllib


def dependencies(project):
    return tomllib.loads((project.root / "pyproject.toml").read_text())["project"][
        "dependencies"]


def ran(project, link):
    result = project.run(["./" + link], check=0)
    return json.loads(result.stdout)


def test_add_in_a_script_links_every_console_script_and_builds(project):
    result = project.cmd("add", "two-tools", stdin=subprocess.DEVNULL, check=0)
    assert result.stdout == ""
    assert "linked ./tool-x" in result.stderr and "linked ./tool-y" in result.stderr
    assert "added      two-tools 1.0" in result.stderr
    assert "Added two-tools" not in result.stderr  # each change said once: appenv's summary
    assert any(d.startswith("two-tools") for d in dependencies(project))
    assert not (project.root / ".venv").exists()  # uv's development environment: not built
    assert os.readlink(project.root / "tool-x") == "appenv"
    assert ran(project, "tool-y")["tool"] == "two-tools"
    assert (project.current() / "bin" / "tool-x").exists()  # built by add itself


def test_add_links_a_program_shipped_as_a_file_and_remove_takes_it_away(project):
    """Not every binary is a console script: ruff's is a file in the wheel (.data/scripts)."""
    result = project.cmd("add", "file-tool", stdin=subprocess.DEVNULL, check=0)
    assert "linked ./file-tool" in result.stderr
    assert project.run(["./file-tool"], check=0).stdout == "file-tool ran\n"
    names = [b["name"] for b in json.loads(project.cmd("list", "--json", check=0).stdout)[
        "binaries"]]
    assert "file-tool" in names and "python" not in names
    project.link("file-too")
    assert "similar name exists: 'file-tool'" in project.run(["./file-too"]).stderr
    assert "removed the link ./file-tool" in project.cmd("remove", "file-tool", check=0).stderr
    assert not os.path.lexists(project.root / "file-tool")


def test_add_refuses_a_link_over_a_file_before_it_changes_anything(project):
    (project.root / "tool-y").write_text("mine\n")
    lock = (project.root / "uv.lock").read_text()
    project.refused([project.appenv, "add", "two-tools", "--binary", "tool-y"], 65,
                    "is not a link to appenv; nothing was changed")
    assert (project.root / "uv.lock").read_text() == lock
    result = project.cmd("add", "two-tools", stdin=subprocess.DEVNULL, check=0)  # the others
    assert "./tool-y exists and is not a link to appenv: not linked" in result.stderr
    assert "linked ./tool-x" in result.stderr and (project.root / "tool-y").read_text() == "mine\n"


def test_adding_a_dependency_again_leaves_its_links_as_they_are(project):
    """Unless none of its binaries is linked yet: added to a group first, or with --no-sync."""
    project.cmd("add", "tool-c", "--no-sync", check=0)
    assert "linked ./tool-c" in project.cmd("add", "tool-c", stdin=subprocess.DEVNULL,
                                            check=0).stderr
    project.cmd("add", "two-tools", "--binary", "tool-y", check=0)
    result = project.cmd("add", "two-tools>=1", stdin=subprocess.DEVNULL, check=0)
    assert "two-tools is linked already (./tool-y)" in result.stderr
    assert not os.path.lexists(project.root / "tool-x")


def test_add_links_only_the_binaries_named_and_no_sync_builds_nothing(project):
    result = project.cmd("add", "two-tools", "--binary", "tool-y", check=0)
    assert "linked ./tool-y" in result.stderr and not (project.root / "tool-x").exists()
    other = project.cmd("add", "tool-c", "--no-sync", check=0)
    assert "no links made" in other.stderr and "--binary" in other.stderr
    assert not (project.root / "tool-c").exists()
    assert 'name = "tool-c"' in (project.root / "uv.lock").read_text()
    assert not (project.current() / "bin" / "tool-c").exists()  # nothing built


def test_add_refuses_what_is_not_a_requirement_with_nothing_changed(project):
    project.refused([project.appenv, "add", "tool-a >> 1"], 64, "not a requirement")
    project.refused([project.appenv, "add"], 64, "at least one package")
    project.refused([project.appenv, "add", "tool-a ==="], 64, "=== needs a version")
    result = project.refused([project.appenv, "add", "no-such-package"], 1,
                             "adding no-such-package failed")
    assert "--frozen" not in result.stderr  # uv's hint for `uv add`, not appenv's


def test_remove_takes_the_links_of_the_tool_away(project):
    project.cmd("add", "two-tools", check=0)
    result = project.cmd("remove", "two-tools", check=0)
    assert "removed the link ./tool-x" in result.stderr
    assert "removed the link ./tool-y" in result.stderr
    assert "removed    two-tools 1.0" in result.stderr
    assert not os.path.lexists(project.root / "tool-x")
    assert os.path.islink(project.root / "tool-a")  # another package's link stays
    assert not any(d.startswith("two-tools") for d in dependencies(project))
    assert ran(project, "tool-a")["version"] == "1.0"


def test_with_project_another_launcher_links_to_the_project_s_own(project_factory):
    """`OTHER/appenv --project DIR add|remove|list`: the links are the project's, leading to
    its own appenv, as when DIR's appenv runs."""
    project = project_factory("project")
    other = project_factory("other", links=())
    def cmd(*args):
        return other.cmd("--project", str(project.root), *args, stdin=subprocess.DEVNULL,
                         check=0)
    assert "linked ./tool-x" in cmd("add", "two-tools").stderr
    assert os.readlink(project.root / "tool-x") == "appenv"
    assert [link["name"] for link in json.loads(cmd("list", "--json").stdout)["links"]] == [
        "tool-a", "tool-x", "tool-y"]
    assert "  tool-a               ok" in cmd("status").stdout
    result = cmd("remove", "two-tools")
    assert "removed the link ./tool-x" in result.stderr and not os.path.lexists(
        project.root / "tool-x")


def test_outdated_names_the_locked_allowed_and_newest_versions(project_factory):
    project = project_factory(dependencies=["tool-a==1.0", "lib-b<2"])
    project.pyproject(["tool-a==1.0", "lib-b"])  # unpinned now; the lock still has 1.0
    result = project.cmd("outdated", "--json", check=0)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["tool-a"] == {"name": "tool-a", "locked": "1.0", "allowed": "1.0",
                              "newest": "2.0"}
    assert rows["lib-b"] == {"name": "lib-b", "locked": "1.0", "allowed": "2.0",
                             "newest": "2.0"}
    text = project.cmd("outdated", check=0).stdout
    assert text.splitlines()[0].split() == ["Package", "Locked", "Allowed", "Newest"]
    assert "lib-b" in text and 'version = "1.0"' in (project.root / "uv.lock").read_text()


def test_outdated_still_compares_the_others_when_a_package_is_for_another_platform(
        project_factory):
    project = project_factory(dependencies=["tool-a==1.0", "win-only; sys_platform == 'win32'"])
    result = project.cmd("outdated", "--json", check=0)
    assert [row["name"] for row in json.loads(result.stdout)] == ["tool-a"]
    assert "the newest version of win-only is unknown" in result.stderr


def test_list_shows_the_links_and_the_binaries_direct_dependencies_first(project_factory):
    project = project_factory(dependencies=["tool-e", "two-tools"], links=["tool-x", "nope"])
    report = json.loads(project.cmd("list", "--json", check=0).stdout)
    assert {link["name"]: link["exists"] for link in report["links"]} == {
        "tool-x": True, "nope": False}
    names = [b["name"] for b in report["binaries"]]
    assert names == ["tool-e", "tool-x", "tool-y"]  # lib-b has none; all three are direct
    assert all(b["direct"] for b in report["binaries"])
    text = project.cmd("list", check=0).stdout
    assert "no such binary in the environment" in text and "two-tools 1.0" in text
    result = project.run(["./nope"])  # the 127 message uses the same list
    assert result.returncode == 127 and "tool-e, tool-x, tool-y" in result.stderr


def test_list_counts_the_packages_of_the_extras_and_groups_as_direct(project_factory):
    project = project_factory(dependencies=["lib-b"], links=[], extra="""
        [project.optional-dependencies]
        cli = ["tool-c"]
        [dependency-groups]
        ops = ["tool-e"]
        [tool.appenv]
        extras = ["cli"]
        groups = ["ops"]
        """)
    report = json.loads(project.cmd("list", "--json", check=0).stdout)
    assert {b["name"]: b["direct"] for b in report["binaries"]} == {"tool-c": True,
                                                                    "tool-e": True}
    assert "tool-c 1.0  (a direct dependency)" in project.cmd("list", check=0).stdout


def test_adds_at_the_same_time_take_turns_and_none_is_lost(project):
    """Each `uv add` writes pyproject.toml whole: two at once, unserialised, lose one's change
    though both exit 0."""
    names = ["tool-c", "lib-d", "two-tools", "tool-e"]
    started = [subprocess.Popen([str(project.appenv), "add", name, "--no-sync"],
                                cwd=str(project.root), env=project.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for name in names]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in started]
    assert all(status == 0 for status, _ in results), results
    pyproject, lock = ((project.root / f).read_text() for f in ("pyproject.toml", "uv.lock"))
    for name in names:
        assert '"{}'.format(name) in pyproject and 'name = "{}"'.format(name) in lock, name
    assert sum("added      " in said for _, said in results) == len(names)


def test_a_mistyped_command_or_link_says_what_was_meant(project):
    result = project.cmd("update-lockfil")
    assert result.returncode == 64 and "'update-lockfile'" in result.stderr
    project.link("tool-aa")
    result = project.run(["./tool-aa"])
    assert result.returncode == 127 and "similar name exists: 'tool-a'" in result.stderr


@pytest.mark.parametrize("argv", [["-q", "prepare"], ["prepare", "--quiet"]])
def test_quiet_says_nothing_but_the_path_on_a_first_build(project, argv):
    result = project.cmd(*argv, check=0)
    assert result.stderr == "" and result.stdout.strip().startswith(str(project.root))
    assert project.cmd("-q", "prepare", "--bogus").returncode == 64  # errors stay


def test_verbose_says_each_uv_command(project):
    result = project.cmd("prepare", "-v", check=0)
    assert "appenv: running " in result.stderr and " sync " in result.stderr
    assert "running" not in project.cmd("prepare", check=0).stderr
    (project.root / "pyproject.toml").write_text(
        (project.root / "pyproject.toml").read_text() + "\n[tool.ruff]\n")
    assert "appenv: running " in project.cmd("-v", "update-lockfile", check=0).stderr
    for argv in (["-v", "status"], ["outdated", "-v"]):  # what they run for themselves too
        assert "appenv: running " in project.cmd(*argv, check=0).stderr, argv


def git(root, *args):
    environ = dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@example.org",
                   GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@example.org")
    return subprocess.run(["git", "-C", str(root)] + list(args), env=environ,
                          capture_output=True, text=True)


@pytest.mark.skipif(not shutil.which("git"), reason="git is not installed")
def test_after_a_merge_the_summary_is_against_our_side(project_factory):
    """The recipe for a conflicted uv.lock; what the merged branch changed without a conflict
    (tool-a 1.0 -> 1.5) is in the summary too, against our side's lock (HEAD)."""
    project = project_factory(dependencies=["tool-a==1.0", "tool-c"])
    assert git(project.root, "init", "-q", "-b", "main").returncode == 0
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "base")
    git(project.root, "checkout", "-qb", "feature")
    project.pyproject(["tool-a==1.5", "tool-c"])
    project.lock()
    git(project.root, "commit", "-qam", "theirs")
    git(project.root, "checkout", "-q", "main")
    project.pyproject(["tool-a==1.0", "tool-c", "lib-d"])
    project.lock()
    git(project.root, "commit", "-qam", "ours")
    merge = git(project.root, "merge", "feature")
    assert merge.returncode != 0 and "uv.lock" in merge.stdout, merge.stdout
    project.pyproject(["tool-a==1.5", "tool-c", "lib-d"])  # step 1: resolve pyproject.toml
    result = project.cmd("update-lockfile", check=0)  # step 2
    assert "upgraded   tool-a 1.0 -> 1.5" in result.stderr, result.stderr
    assert "added      lib-b" in result.stderr and "lib-d" not in result.stderr
    assert "<<<<<<<" not in (project.root / "uv.lock").read_text()
