"""Fast in-process unit tests of appenv.py's pure parts: no subprocess, no uv, no network."""

import importlib.util
import os
import pathlib

import pytest
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("appenv_under_test", ROOT / "appenv.py")
appenv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(appenv)


def problem(status, call, *args):
    with pytest.raises(appenv.Problem) as caught:
        call(*args)
    assert caught.value.status == status and caught.value.message
    return caught.value.message


# --- LockDiff ---------------------------------------------------------------------------------


def lock(*packages):
    return {"package": [dict(zip(("name", "version"), p)) if isinstance(p, tuple) else p
                        for p in packages]}


def test_lock_packages_skip_the_project_and_members_and_keep_every_version():
    found = appenv.LockDiff.packages(lock(
        ("a", "1.0"), ("d", "9.0"), ("d", "10.0"), {"name": "x"},
        {"name": "me", "version": "0.1", "source": {"editable": "."}},
        {"name": "member", "version": "0.1", "source": {"virtual": "m"}},
        {"name": 1, "version": "1"}, {"name": "y", "version": 2}, "not a table"))
    assert found == {"a": {"1.0"}, "d": {"9.0", "10.0"}, "x": {"(no version)"}}


@pytest.mark.parametrize("data", [{}, {"package": "x"}, {"package": [3]}])
def test_lock_packages_of_a_lock_without_a_package_list_is_empty(data):
    assert appenv.LockDiff.packages(data) == {}


BEFORE = appenv.LockDiff.packages(lock(("a", "1.0"), ("b", "2.0"), ("c", "1.0"), ("d", "9.0")))
AFTER = appenv.LockDiff.packages(lock(("a", "1.10"), ("b", "1.9"), ("d", "9.0"), ("d", "10.0"),
                                      ("e", "1.0")))


def test_lock_diff_tells_an_upgrade_from_a_downgrade():
    assert appenv.LockDiff(BEFORE, AFTER).changes(Version) == [
        ("upgraded", "a", "1.0", "1.10"), ("downgraded", "b", "2.0", "1.9"),
        ("removed", "c", "1.0", None), ("changed", "d", "9.0", "9.0, 10.0"),
        ("added", "e", None, "1.0")]


def test_lock_diff_without_packaging_says_only_changed():
    kinds = {name: kind for kind, name, *_ in appenv.LockDiff(BEFORE, AFTER).changes(None)}
    assert kinds == {"a": "changed", "b": "changed", "c": "removed", "d": "changed",
                     "e": "added"}


def test_lock_diff_of_an_unversioned_package_says_changed():
    diff = appenv.LockDiff({"x": {"(no version)"}}, {"x": {"1.0"}})
    assert diff.changes(Version) == [("changed", "x", "(no version)", "1.0")]


def test_lock_diff_report_of_equal_locks_says_no_package_changed():
    assert appenv.LockDiff(BEFORE, dict(BEFORE)).report() == "uv.lock: no package changed"


def test_lock_diff_report_counts_then_lists_by_kind():
    assert appenv.LockDiff(BEFORE, AFTER).report().splitlines() == [
        "uv.lock: 1 added, 1 removed, 1 upgraded, 1 downgraded, 1 changed",
        "  added      e 1.0",
        "  removed    c 1.0",
        "  upgraded   a 1.0 -> 1.10",
        "  downgraded b 2.0 -> 1.9",
        "  changed    d 9.0 -> 9.0, 10.0"]


# --- our_side ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data, ours", [
    (b"a = 1\n=======\n", None),  # no conflict start: not conflicted
    (b"x\n<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> branch\nz\n", b"x\nours\nz\n"),
    (b"<<<<<<< HEAD\nours\n||||||| base\nbase\n=======\ntheirs\n>>>>>>> b\n", b"ours\n"),
    (b"<<<<<<< HEAD\nours\n=======\ntheirs\n", None),  # unterminated
    (b"<<<<<<< HEAD\r\nours\r\n=======\r\nb\r\n>>>>>>> b\r\n", b"ours\r\n"),
], ids=["no-markers", "plain", "diff3", "unterminated", "crlf"])
def test_our_side_keeps_head_and_the_lines_outside_conflicts(data, ours):
    assert appenv.our_side(data) == ours


# --- redact -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, redacted", [
    ("https://user:pw@host/simple", "https://host/simple"),
    ("pkg @ https://token@host", "pkg @ https://host"),
    ("https://u:p@ss@host/", "https://host/"),  # the last @ of the authority ends it
    ("a http://a:b@c:80/x and 'git+ssh://git@github.com/o/r'",
     "a http://c:80/x and 'git+ssh://github.com/o/r'"),
    ("https://host/p@th?q=a@b", "https://host/p@th?q=a@b"),  # @ after the authority is kept
    ("mail me@example.org", "mail me@example.org"),  # not a URL
])
def test_redact_leaves_out_the_credentials_of_every_url(text, redacted):
    assert appenv.redact(text) == redacted


# --- Requirements -----------------------------------------------------------------------------


def requirements(tmp_path, text):
    path = tmp_path / "requirements.txt"
    path.write_text(text, encoding="utf-8")
    return appenv.Requirements(str(path))


def reqs(parsed):
    return [(number, str(requirement)) for number, requirement in parsed.requirements]


def test_requirements_join_continuation_lines_under_the_first_line_number(tmp_path):
    parsed = requirements(tmp_path, "requests \\\n  >=2\nflask\n")
    assert reqs(parsed) == [(1, "requests>=2"), (3, "flask")]


def test_requirements_drop_comments_but_not_url_fragments(tmp_path):
    parsed = requirements(tmp_path, "# a comment\nflask # web\npkg @ https://x/y#egg=z\n"
                                    "-e git+https://g/x#egg=x  # editable\n")
    assert reqs(parsed) == [(2, "flask"), (3, "pkg@ https://x/y#egg=z")]
    assert parsed.options == [(4, "-e", "--editable", "git+https://g/x#egg=x")]
    assert parsed.unreadable == []


def test_requirements_expand_only_set_capitalised_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKEN_1", "s3cr3t")
    monkeypatch.delenv("UNSET_X", raising=False)
    parsed = requirements(tmp_path, "--index-url https://u:${TOKEN_1}@h/simple\n"
                                    "--find-links ${UNSET_X}/w\n--find-links ${lower}/w\n")
    assert [value for *_, value in parsed.options] == [
        "https://u:s3cr3t@h/simple", "${UNSET_X}/w", "${lower}/w"]


def test_requirements_read_options_long_short_with_and_without_values(tmp_path):
    parsed = requirements(tmp_path, "-i https://a/simple\n--extra-index-url=https://b/\n"
                                    "-ihttps://c/\n--pre\nfoo==1 --hash=sha256:ab\n")
    assert parsed.options == [
        (1, "-i", "--index-url", "https://a/simple"),
        (2, "--extra-index-url", "--extra-index-url", "https://b/"),
        (3, "-i", "--index-url", "https://c/"),
        (4, "--pre", "--pre", None),
        (5, "--hash", "--hash", "sha256:ab")]
    assert reqs(parsed) == [(5, "foo==1")]


def test_requirements_keep_appenv_comments_and_record_unreadable_lines(tmp_path):
    parsed = requirements(tmp_path, "# appenv-python-preference: 3.9,3.10\nfoo\nbad req !!\n")
    assert parsed.appenv == {"python-preference": (1, "3.9,3.10")}
    assert reqs(parsed) == [(2, "foo")]
    [(number, line, reason)] = parsed.unreadable
    assert (number, line) == (3, "bad req !!") and reason


def test_requirements_a_comment_line_ends_a_continuation_as_in_pip(tmp_path):
    parsed = requirements(tmp_path, "requests\\\n# a comment\nflask\n")
    assert reqs(parsed) == [(1, "requests"), (3, "flask")] and parsed.unreadable == []


def test_requirements_ignore_a_byte_order_mark_as_pip_does(tmp_path):
    parsed = requirements(tmp_path, "\ufeffrequests\n")
    assert reqs(parsed) == [(1, "requests")] and parsed.unreadable == []


@pytest.mark.parametrize("text", ["pkg-1.0.tar", "pkg-1.0.tar.xz", "pkg-1.0.tbz", "pkg.txz",
                                  "pkg-1.0.tar.gz", "pkg.whl", "./pkg", "dir/pkg", "file://x"])
def test_a_line_pip_takes_for_an_archive_a_path_or_a_url_is_recognised(text):
    assert appenv.looks_like_a_path_or_url(text)


@pytest.mark.parametrize("text", ["six=1.16.0", "pkg.tar.gz.bak", "pkg-1.0.tarx"])
def test_a_line_that_is_none_of_them_is_not(text):
    assert not appenv.looks_like_a_path_or_url(text)


# --- pyproject_digest -------------------------------------------------------------------------


PYPROJECT = """\
[project]
name = "a"
version = "1"
dependencies = ["httpie"]

[build-system]
requires = ["setuptools", "setuptools-scm>=8"]
build-backend = "setuptools.build_meta"
"""


def pyproject_digest(text):
    return appenv.pyproject_digest("pyproject.toml", text.encode())


@pytest.mark.parametrize("extra", ["[tool.ruff]\nline-length = 99\n",
                                   "[tool.pytest.ini_options]\naddopts = '-x'\n"])
def test_pyproject_digest_ignores_other_tools_tables(extra):
    assert pyproject_digest(PYPROJECT + extra) == pyproject_digest(PYPROJECT)


@pytest.mark.parametrize("changed", [
    PYPROJECT.replace('["httpie"]', '["httpie>=3"]'),
    PYPROJECT + "[tool.uv]\nconstraint-dependencies = ['x<2']\n",
    PYPROJECT + "[tool.appenv]\nextras = ['x']\n",
    PYPROJECT + "[tool.setuptools_scm]\nversion_file = 'v.py'\n",  # the build backend's
    PYPROJECT + "[tool.setuptools]\npy-modules = ['a']\n",
], ids=["dependencies", "tool.uv", "tool.appenv", "tool.setuptools_scm", "tool.setuptools"])
def test_pyproject_digest_counts_what_the_installation_depends_on(changed):
    assert pyproject_digest(changed) != pyproject_digest(PYPROJECT)


def test_without_a_build_system_the_setuptools_table_counts():
    """uv builds a `package = true` project without [build-system] with setuptools."""
    bare = PYPROJECT.split("[build-system]")[0] + "[tool.uv]\npackage = true\n"
    assert pyproject_digest(bare + "[tool.setuptools]\npy-modules = ['a']\n") != \
        pyproject_digest(bare)
    assert pyproject_digest(bare + "[tool.ruff]\nline-length = 99\n") == pyproject_digest(bare)


@pytest.mark.parametrize("text", ["= not toml",
                                  "<<<<<<< HEAD\na = 1\n=======\na = 2\n>>>>>>> b\n"])
def test_pyproject_digest_of_invalid_toml_is_none(text):
    assert pyproject_digest(text) is None


# --- release, names, Selection, Config --------------------------------------------------------


@pytest.mark.parametrize("version, numbers", [
    ("0.13.9", (0, 13, 9)), ("0.13.9+3", (0, 13, 9)), ("bad", ()), ("", ()), (None, ())])
def test_release_is_uvs_version_as_numbers(version, numbers):
    assert appenv.release(version) == numbers


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", []), (" b, a ,,a", ["a", "b"])])
def test_names_are_a_sorted_set_or_none_when_unset(value, expected):
    assert appenv.names(value) == expected


def test_selection_encodes_extras_groups_and_uv_python(monkeypatch):
    monkeypatch.delenv("UV_PYTHON", raising=False)
    assert appenv.Selection().encode() == b"-;-;"
    assert appenv.Selection(["b", "a", "a"], []).encode() == b"a,b;;"
    monkeypatch.setenv("UV_PYTHON", "3.12")
    assert appenv.Selection(None, ["g"]).encode() == b"-;g;3.12"


def test_selection_resolves_to_the_configured_lists_where_unset():
    config = appenv.Config({"tool": {"appenv": {"extras": ["x"], "groups": ["g"]}}})
    assert appenv.Selection().resolve(config) == (["x"], ["g"])
    assert appenv.Selection(["y"], []).resolve(config) == (["y"], [])


@pytest.mark.parametrize("tool, words", [
    ({"appenv": 3}, "must be a table"), ({"appenv": {"nope": 1}}, "no setting 'nope'"),
    ({"appenv": {"extras": "x"}}, "extras must be a list of strings"),
    ({"appenv": {"groups": [1]}}, "groups must be a list of strings"),
    ({"appenv": {"all-packages": 1}}, "all-packages must be true or false"),
    ({"appenv": {"python": 3.12}}, "python must be a string"),
    ({"appenv": {"keep": True}}, "keep must be a whole number"),
    ({"appenv": {"keep": 0}}, "keep must be at least 1"),
    ({"uv": {"required-version": 1}}, "required-version must be a string"),
])
def test_config_rejects_a_bad_setting_with_status_65(tool, words):
    assert words in problem(65, appenv.Config, {"tool": tool})


def test_config_defaults_and_sync_options():
    config = appenv.Config({"tool": 3})
    assert (config.keep, config.required_uv) == (appenv.KEEP, None)
    assert config.sync_options(appenv.Selection()) == ["--frozen", "--no-default-groups"]
    config = appenv.Config({"tool": {"appenv": {
        "extras": ["x"], "groups": ["g"], "packages": ["p", "q"], "all-packages": True,
        "python": "3.12", "keep": 5}}})
    assert config.sync_options(appenv.Selection()) == [
        "--frozen", "--no-default-groups", "--extra", "x", "--group", "g", "--all-packages",
        "--package", "p", "--package", "q", "--python", "3.12"]
    assert config.sync_options(appenv.Selection(["y"], []))[2:5] == ["--extra", "y",
                                                                    "--all-packages"]


# --- read_memo, fingerprint -------------------------------------------------------------------


@pytest.mark.parametrize("content, expected", [
    (b"0123456789abcdef" * 2, "0123456789abcdef" * 2), (b"0123456789abcdef", None),
    (b"0123456789ABCDEF" * 2, None), (b"x" * 32, None), (b"\xff" * 32, None),
    (b"0123456789abcdef" * 4, None)])
def test_read_memo_returns_only_a_32_hex_digest(tmp_path, content, expected):
    (tmp_path / "memo").write_bytes(content)
    assert appenv.read_memo(str(tmp_path), "memo") == expected
    assert appenv.read_memo(str(tmp_path), "missing") is None


def test_fingerprint_changes_with_content_and_file_kind(tmp_path):
    def fp(*names, prefix=b"p"):
        return appenv.fingerprint(str(tmp_path), prefix, names)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "f").write_bytes(b"one")
    os.mkfifo(str(tmp_path / "fifo"))  # opened without blocking, and not read
    first = fp("f")
    assert first == fp("f") and len(first) == 24
    assert fp("f", prefix=b"q") != first
    (tmp_path / "f").write_bytes(b"two")
    assert fp("f") != first
    assert len({fp("missing"), fp("empty"), fp("fifo"), fp("f")}) == 4


def test_fingerprint_counts_a_pyproject_by_what_counted_says(tmp_path):
    (tmp_path / "pyproject.toml").write_bytes(b"[project]\n")
    seen = []

    def counted(name, full, data):
        seen.append((name, len(full), data))
        return "digest"
    assert appenv.fingerprint(str(tmp_path), b"p", ["pyproject.toml"], counted)
    assert seen == [("pyproject.toml", 32, b"[project]\n")]
    assert appenv.fingerprint(str(tmp_path), b"p", ["pyproject.toml"], lambda *a: None) is None


# --- init's inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["my-tools", " my_tools.x "])
def test_project_name_accepts_a_pep_508_name(text):
    assert appenv.project_name(text) == text.strip()


@pytest.mark.parametrize("text", ["-bad", "ok-", "a b", "", "x>=1", "x[y]"])
def test_project_name_rejects_anything_else(text):
    problem(64, appenv.project_name, text)


def test_requirement_text_is_normalised_and_errors_hide_credentials():
    assert appenv.requirement_text("  Requests >= 2 ") == "Requests>=2"
    message = problem(64, appenv.requirement_text, "pkg @ https://u:secret@host/p.whl junk")
    assert "secret" not in message and "https://host/p.whl" in message


@pytest.mark.parametrize("text", ["http", " http "])
def test_binary_name_accepts_a_file_name(text):
    assert appenv.binary_name(text) == "http"


@pytest.mark.parametrize("text", ["a/b", ".", "..", "", "x\0y", "appenv", "appenv.py",
                                  "uv.lock", "pyproject.toml", ".venv", "\udcff"])
def test_binary_name_rejects_paths_and_the_projects_own_files(text):
    problem(64, appenv.binary_name, text)


@pytest.mark.parametrize("text, expected", [
    ("-", []), ("", []), (" b, a b,,c ", ["b", "a", "c"])])
def test_binary_names_split_on_spaces_and_commas_keeping_first_order(text, expected):
    assert appenv.binary_names(text) == expected


@pytest.mark.parametrize("text, setting", [
    ("3.12", (">=3.12", "3.12")), (" 3.12.1 ", (">=3.12", "3.12.1")),
    (">=3.10,<3.13", ("<3.13,>=3.10", None)), ("==3.12", ("==3.12", None))])
def test_python_setting_of_a_version_or_a_specifier(text, setting):
    assert appenv.python_setting(text) == setting


@pytest.mark.parametrize("text", ["3", "banana", "", "3.12.1.2", "3.12.dev1", "1!3.12",
                                  "3.12+local"])
def test_python_setting_rejects_anything_else(text):
    problem(64, appenv.python_setting, text)


def test_plain_text_refuses_what_is_not_utf8():
    assert appenv.plain_text("ok", "a name") == "ok"
    assert "a name" in problem(64, appenv.plain_text, "\udcff", "a name")


# --- Index ------------------------------------------------------------------------------------


def test_index_keeps_credentials_out_of_its_url():
    index = appenv.Index("https://user:p%40ss@Pypi.Example.com:8080/simple", set(), default=True)
    assert (index.url, index.name) == ("https://Pypi.Example.com:8080/simple", "pypi-example-com")
    assert index.variables() == {"UV_INDEX_PYPI_EXAMPLE_COM_USERNAME": "user",
                                 "UV_INDEX_PYPI_EXAMPLE_COM_PASSWORD": "p@ss"}
    assert "default = true" in index.toml() and "p@ss" not in "\n".join(index.toml())


def test_indexes_of_one_host_get_unique_names():
    taken = set()
    first = appenv.Index("https://host.example/simple", taken)
    second = appenv.Index("https://token@host.example/other", taken, flat=True)
    assert (first.name, second.name) == ("host-example", "host-example-2")
    assert taken == {"host-example", "host-example-2"}
    assert first.variables() == {}
    assert second.variables() == {"UV_INDEX_HOST_EXAMPLE_2_USERNAME": "token"}
    assert 'format = "flat"' in second.toml()


def test_index_without_a_host_is_named_after_its_path():
    assert appenv.Index("file:///srv/wheels/", set()).name == "wheels"


# --- Record: what appenv keeps in files, read by name ------------------------------------------


def test_a_record_reads_back_by_name_with_lists_in_order(tmp_path):
    path = str(tmp_path / "plan")
    appenv.Record("plan", [("uv.path", "/bin/uv"), ("option", "--frozen"),
                           ("option", "--extra"), ("option", "a = b")]).write(path)
    record = appenv.Record.read("plan", path)
    assert record.get("uv.path") == "/bin/uv" and record.get("missing") is None
    assert record.all("option") == ["--frozen", "--extra", "a = b"]


@pytest.mark.parametrize("data", [b"", b"garbage", b"format = plan 1\nuv.path = x\n",
                                  b"format = environment " + appenv.FORMAT.encode() + b"\n"])
def test_a_record_of_another_kind_or_format_or_damaged_is_not_read(data):
    assert appenv.Record.parse("plan", data) is None


def test_a_record_refuses_a_value_with_a_line_break(tmp_path):
    with pytest.raises(ValueError):
        appenv.Record("uv", [("uv.path", "a\nformat = uv 9")]).write(str(tmp_path / "uv"))
    assert not (tmp_path / "uv").exists()


# --- Commands: declared once, parsed by one parser ---------------------------------------------


def test_every_command_parses_its_declared_options_and_refuses_others():
    prepare = appenv.COMMANDS["prepare"]
    given, arguments = prepare.parse(["--extra", "a", "--extra=b", "--all-groups"])
    assert given == {"--extra": ["a", "b"], "--all-groups": True} and arguments == []
    for args, words in ((["--bogus"], "unexpected option"), (["--extra"], "needs a value"),
                        (["--all-groups=1"], "takes no value"), (["x"], "unexpected argument")):
        assert words in problem(64, prepare.parse, args)
    init = appenv.COMMANDS["init"]
    assert init.parse(["dir", "--name", "x"]) == ({"--name": "x"}, ["dir"])
    assert "given twice" in problem(64, init.parse, ["--name", "x", "--name", "y"])


def test_each_help_names_every_declared_option_and_the_usage_names_every_command():
    usage = appenv.usage()
    for name, command in appenv.COMMANDS.items():
        assert "\n  {} ".format(name) in usage
        text = command.help()
        assert text.startswith(command.summary + "\n\nUsage: ./appenv " + name)
        for option in command.options:
            assert option.label().strip() in text


# --- Environments in use ----------------------------------------------------------------------


@pytest.mark.parametrize("options, hides", [
    (b"rw", False), (b"rw,hidepid=0", False), (b"rw,hidepid=1", False),
    (b"rw,hidepid=2", True), (b"rw,hidepid=invisible,gid=10", True),
    (b"rw,hidepid=ptraceable", True)])
def test_proc_mounted_with_hidepid_hides_other_users_processes(options, hides):
    """Where /proc leaves them out, `runs_from` cannot know: the environment is kept."""
    mountinfo = (b"20 1 0:19 / / rw - ext4 /dev/sda1 rw,hidepid=2\n"
                 b"22 27 0:21 / /proc rw,relatime shared:12 - proc proc " + options + b"\n")
    assert appenv.proc_hides_processes(mountinfo, set()) is hides
    assert appenv.proc_hides_processes(b"", set()) is False
    stacked = mountinfo + b"30 22 0:40 / /proc rw - proc proc rw,hidepid=invisible\n"
    assert appenv.proc_hides_processes(stacked, set()) is True  # the last mount is seen
    exempt = b"22 27 0:21 / /proc rw - proc proc rw,hidepid=2,gid=10\n"
    assert appenv.proc_hides_processes(exempt, {10}) is False
    assert appenv.proc_hides_processes(exempt, {11}) is True
