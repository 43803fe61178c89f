"""Running a tool through a symlink, as a user does: ./NAME ARGS."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import LAUNCHER


def report(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_symlink_runs_the_locked_binary(project):
    result = project.run(["./tool-a", "hello", "world"])
    out = report(result)
    assert out["tool"] == "tool-a" and out["version"] == "1.0"
    assert out["argv"][1:] == ["hello", "world"]


def test_first_run_stdout_is_only_the_binary(project):
    result = project.run(["./tool-a", "x"])
    assert result.stdout.count("\n") == 1
    json.loads(result.stdout)  # nothing but the tool's one line
    assert "tool-a" in result.stderr  # uv's progress went to stderr


def test_argv0_is_the_binary_full_path_and_basedir_is_set(project):
    out = report(project.run(["./tool-a"]))
    assert os.path.isabs(out["argv"][0])
    assert out["argv"][0].endswith("/bin/tool-a")
    assert out["argv"][0].startswith(str(project.root / ".appenv" / "envs"))
    assert out["basedir"] == str(project.root)


def test_working_directory_and_arguments_pass_untouched(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["a b", "", "--help", "ünïcödé", "*", "$HOME", "-"]
    out = report(project.run([project.root / "tool-a"] + args, cwd=elsewhere))
    assert out["cwd"] == str(elsewhere)
    assert out["argv"][1:] == args


@pytest.mark.parametrize("status", [0, 1, 3, 42, 255])
def test_exit_status_is_the_binary_s(project, status):
    assert project.run(["./tool-a", "--exit", str(status)]).returncode == status


def test_stdin_reaches_the_binary(project):
    result = project.run(["./tool-a", "--cat"], input="line one\nline two\n")
    assert result.stdout == "line one\nline two\n"


def test_the_launcher_is_replaced_by_the_binary(project):
    project.run(["./tool-a"], check=0)  # build first
    proc = subprocess.Popen([str(project.root / "tool-a"), "--late-import",
                             str(project.root / "never")], cwd=str(project.root),
                            env=project.env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "started\n"
        with open("/proc/{}/cmdline".format(proc.pid), "rb") as f:
            cmdline = f.read().split(b"\0")
        # The same process is now the binary: no launcher left waiting in between.
        assert cmdline[1].decode().endswith("/bin/tool-a")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        proc.kill()


def test_link_in_a_subdirectory(project, tmp_path):
    project.link("tool-a", target="../appenv", where=project.root / "bin")
    out = report(project.run(["bin/tool-a", "sub"]))
    assert out["basedir"] == str(project.root) and out["cwd"] == str(project.root)
    out = report(project.run(["./tool-a"], cwd=project.root / "bin"))
    assert out["basedir"] == str(project.root) and out["cwd"] == str(project.root / "bin")


def test_link_from_outside_the_project(project, tmp_path):
    outside = tmp_path / "usr-local-bin"
    project.link("tool-a", target=project.root / "appenv", where=outside)
    out = report(project.run([outside / "tool-a", "x"], cwd=tmp_path))
    assert out["basedir"] == str(project.root)


def test_chain_of_links(project, tmp_path):
    first = project.link("tool-a", target=project.root / "tool-a", where=tmp_path / "one")
    project.link("tool-a", target=first, where=tmp_path / "two")
    assert report(project.run([tmp_path / "two" / "tool-a"]))["tool"] == "tool-a"


def test_a_project_reached_through_linked_directories_is_one_project(project, tmp_path):
    """The root is the real directory, however it is reached: one environment, not two."""
    project.run(["./tool-a"], check=0)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").symlink_to(project.root)  # a link to a directory
    # relative, with .. (which the kernel takes after the link, as realpath must) and .
    (tmp_path / "c").symlink_to("a/../a/b/../{}/.".format(project.root.name))
    outside = project.link("tool-a", target=tmp_path / "c" / "tool-a", where=tmp_path / "bin")
    for argv, cwd in (([outside], tmp_path), (["../c/tool-a"], tmp_path / "a"),
                      (["b/tool-a"], tmp_path / "a"), (["./tool-a"], tmp_path / "c")):
        out = report(project.run(argv, cwd=cwd))
        assert out["basedir"] == str(project.root), argv
    assert len(project.environments()) == 1


def test_paths_with_spaces_and_non_ascii(project_factory):
    project = project_factory(name="my projé ct/wïth spaces")
    out = report(project.run(["./tool-a", "ok"]))
    assert out["basedir"] == str(project.root)
    assert out["argv"][1:] == ["ok"]


def test_unknown_binary_is_127_with_the_binaries_there(project):
    project.link("nope")
    result = project.run(["./nope"])
    assert result.returncode == 127
    assert "'nope'" in result.stderr and "tool-a" in result.stderr
    assert "activate" not in result.stderr.split("provides:")[1].splitlines()[0]
    assert "update-lockfile" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_help_and_version(project):
    result = project.cmd("--help", check=0)
    assert "update-lockfile" in result.stdout and "Usage:" in result.stdout
    assert project.cmd("-h", check=0).stdout == result.stdout
    assert "appenv" in project.cmd("--version", check=0).stdout
    assert "uv lock" in project.cmd("help", "update-lockfile", check=0).stdout
    assert "--no-install-project" in project.cmd("prepare", "--help", check=0).stdout
    # as with uv, --help anywhere among a command's options, but run, uv and python pass
    # what follows them on
    help_init = project.cmd("help", "init", check=0).stdout
    assert project.cmd("init", "somewhere", "--name", "x", "--help", check=0).stdout == help_init
    assert not (project.root / "somewhere").exists()
    assert "Usage: ./appenv status" in project.cmd("status", "--json", "-h", check=0).stdout
    passed = project.cmd("python", "-c", "import sys; print(sys.argv[1:])", "--help", check=0)
    assert passed.stdout == "['--help']\n"


@pytest.mark.parametrize("args", [["frobnicate"], ["--frob"], ["help", "frobnicate"],
                                  ["prepare", "--bogus"], [], ["reset", "extra"]])
def test_usage_errors_exit_64(project, args):
    result = project.cmd(*args)
    assert result.returncode == 64
    assert "Usage" in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr


def test_appenv_py_name_is_subcommand_mode(project):
    os.rename(project.appenv, project.root / "appenv.py")
    os.remove(project.root / "tool-a")
    project.link("tool-a", "appenv.py")
    assert "appenv" in project.run(["./appenv.py", "--version"], check=0).stdout
    assert report(project.run(["./tool-a"]))["tool"] == "tool-a"


def test_the_example_launcher_is_a_copy_of_appenv_py():
    example = os.path.join(os.path.dirname(LAUNCHER), "example", "appenv")
    with open(example, "rb") as a, open(LAUNCHER, "rb") as b:
        assert a.read() == b.read(), "run: cp appenv.py example/appenv"
    assert os.access(example, os.X_OK)


def test_the_launcher_is_compiled_once_per_content_not_per_path(project_factory, tmp_path):
    """A fresh clone at a new path finds the launcher's bytecode cached by its content."""
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache)}
    first = project_factory("first")
    assert report(first.run(["./tool-a"], env=env))["tool"] == "tool-a"
    (compiled,) = (cache / "appenv" / "bytecode").iterdir()
    # per Python release, not only per minor version: bytecode changes between pre-releases
    assert compiled.name == "{}-{:x}-{}".format(sys.implementation.cache_tag, sys.hexversion,
                                                os.path.getsize(LAUNCHER))
    stamp = compiled.stat().st_mtime_ns
    second = project_factory("second clone")
    assert report(second.run(["./tool-a"], env=env))["basedir"] == str(second.root)
    assert list((cache / "appenv" / "bytecode").iterdir()) == [compiled]
    assert compiled.stat().st_mtime_ns == stamp  # read, not written again
    with open(second.appenv, "a") as f:
        f.write("# an edited launcher\n")
    assert report(second.run(["./tool-a"], env=env))["tool"] == "tool-a"
    assert len(list((cache / "appenv" / "bytecode").iterdir())) == 2


COMMANDS = ["init", "migrate", "prepare", "add", "remove", "outdated", "update-lockfile", "run",
            "uv", "python", "list", "status",
            "reset", "self-update", "help"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_is_the_documented_text(project, command):
    help_text = project.cmd("help", command, check=0).stdout
    usage = project.cmd("--help", check=0).stdout
    if command != "help":
        assert project.cmd(command, "--help", check=0).stdout == help_text
    assert "\n  {} ".format(command) in usage
    docs = os.path.join(os.path.dirname(LAUNCHER), "docs", "commands.md")
    with open(docs) as f:
        text = f.read()
    assert usage in text, "docs/commands.md: paste `./appenv --help`"
    assert help_text in text, "docs/commands.md: paste `./appenv help {}`".format(command)


def test_a_corrupt_bytecode_cache_is_compiled_again(project, tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert report(project.run(["./tool-a"], env=env))["tool"] == "tool-a"
    (compiled,) = (tmp_path / "cache" / "appenv" / "bytecode").iterdir()
    source = open(LAUNCHER, "rb").read()
    compiled.write_bytes(compiled.read_bytes()[:len(source) + 100])  # a torn write
    assert report(project.run(["./tool-a"], env=env))["tool"] == "tool-a"
    compiled.write_bytes(source + b"\xe9 not marshal data")
    assert report(project.run(["./tool-a"], env=env))["tool"] == "tool-a"
    assert compiled.read_bytes() != source + b"\xe9 not marshal data"  # written whole again


def test_a_binary_that_cannot_be_executed_is_126(project):
    project.run(["./tool-a"], check=0)
    weird = project.current() / "bin" / "weird"
    weird.write_bytes(b"\x7fELF not really\n")
    weird.chmod(0o755)
    project.link("weird")
    # a binary added by hand is repaired away; APPENV_NO_SYNC runs the environment as it is
    result = project.run(["./weird"], env={"APPENV_NO_SYNC": "1"})
    assert result.returncode == 126 and "cannot run" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("text", ['tool = "x"\n', '[tool.uv]\nsources = []\n',
                                  '[tool.uv.workspace]\nmembers = [1]\n',
                                  '[tool.uv]\nrequired-version = 1\n'])
def test_odd_shapes_in_pyproject_are_no_traceback(project, text):
    path = project.root / "pyproject.toml"
    path.write_text(path.read_text() + text)
    result = project.run(["./tool-a"])
    assert "Traceback" not in result.stderr, result.stderr
    assert project.cmd("status").returncode == 0


def test_a_binary_starts_with_no_signal_ignored_that_a_shell_would_not(project_factory):
    """Python's start ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across
    exec: a binary that is not Python is to end on a closed pipe (`./tool | head`) as it does
    when run directly, and uv's commands are to start the same way."""
    project = project_factory(dependencies=["file-tool==1.0"], links=["file-tool"])
    for argv in (["./file-tool"], [str(project.appenv), "run", "file-tool"]):
        result = project.run(argv, check=0)
        ignored = int(result.stderr.split("SigIgn:")[1].split()[0], 16)
        pipe, file_size = 1 << (signal.SIGPIPE - 1), 1 << (signal.SIGXFSZ - 1)
        assert ignored & (pipe | file_size) == 0, (argv, result.stderr)


def closed(project, streams, *argv):
    """Run ARGV in PROJECT with the standard streams STREAMS ("<&-", ">&-", "2>&-") closed, as
    a daemon may start a tool."""
    return subprocess.run(["sh", "-c", '"$@" ' + streams, "sh"] + [str(a) for a in argv],
                          cwd=project.root, env=project.env, capture_output=True, text=True)


def test_closed_standard_streams_are_dev_null_for_uv_and_the_binary(project, bare_factory):
    result = closed(project, "2>&-", "./tool-a")  # a first run: uv says what it installs
    assert result.returncode == 0 and json.loads(result.stdout)["tool"] == "tool-a"
    assert (project.root / ".appenv" / "lock").read_bytes() == b""  # not uv's progress
    result = closed(project, "<&- 2>&-", "./appenv", "python", "-c",
                    "import os; print(os.readlink('/proc/self/fd/0'), "
                    "os.readlink('/proc/self/fd/2'))")
    assert (result.returncode, result.stdout) == (0, "/dev/null /dev/null\n")
    assert closed(project, "2>&-", "./appenv", "bogus").returncode == 64
    result = closed(project, ">&-", "./appenv", "update-lockfile")  # nothing for stdout: fine
    assert result.returncode == 0, result.stderr
    result = closed(project, ">&-", "./appenv", "status")
    assert (result.returncode, result.stderr) == (74, "error: cannot write the output: stdout "
                                                      "is closed\n")
    result = closed(bare_factory(), "<&-", "./appenv", "init")
    assert result.returncode == 64 and "init needs a project name" in result.stderr


@pytest.mark.parametrize("links", [0, 300])
def test_output_to_a_reader_gone_is_141_quietly_and_to_a_full_disk_74(project, links):
    """`./appenv status | head -1`: the reader has what it wanted (141, as a shell says
    SIGPIPE, and no traceback); stdout on a full disk (/dev/full) is an error said once.
    With 300 links, `list` writes more than Python buffers (8 KB) before it ends."""
    project.cmd("prepare")
    for number in range(links):
        project.link("tool-{:03}".format(number))
    commands = [["list", "--json"]] + ([] if links else [["help"], ["--version"]])
    for command in commands:
        read, write = os.pipe()
        os.close(read)
        with open(write, "wb") as closed:
            result = subprocess.run([str(project.appenv)] + command, stdout=closed,
                                    env=project.env, stderr=subprocess.PIPE, text=True)
        assert (result.returncode, result.stderr) == (141, ""), command
        with open("/dev/full", "wb") as full:
            result = subprocess.run([str(project.appenv)] + command, stdout=full,
                                    env=project.env, stderr=subprocess.PIPE, text=True)
        assert result.returncode == 74, (command, result.stderr)
        assert result.stderr.count("cannot write the output: No space left on device") == 1
        assert "Traceback" not in result.stderr
