#!/bin/sh
''':'
# For sh, the lines up to the closing quotes pick the Python that runs appenv; for Python they
# are a string. The interpreter found for this PATH is remembered in appenv's cache and checked
# with builtins only, so that a version manager's shim (pyenv, mise, asdf: 40-90 ms) starts
# once, not on every run; else python3, else the newest python3.X. See docs/environments.md.
p=$APPENV_PYTHON m= k=
if [ -z "$p" ]; then
  case $XDG_CACHE_HOME in /*) m=$XDG_CACHE_HOME;; *) m=${HOME:+$HOME/.cache};; esac
  m=${m:+$m/appenv/python} k=$PATH
  while IFS= read -r a && IFS= read -r b; do
    if [ "$a" = "$PATH" ]; then p=$b; break; fi
  done 2>/dev/null <"${m:-/}"
  if [ -n "$p" ] && [ -x "$p" ]; then
    m= k=
  elif command -v python3 >/dev/null 2>&1; then
    p=python3
  else  # the newest python3.X that starts (a shim may have no such version selected)
    n=40
    until [ $n -lt 8 ] || { command -v python3.$n && python3.$n -I -S -c ""; } >/dev/null 2>&1
    do n=$((n - 1)); done
    if [ $n -lt 8 ]; then
      echo "appenv: error: appenv needs Python 3.8 or newer, and PATH has neither python3 nor" \
        "python3.8 or newer (PATH=$PATH). Install Python 3.8+, or set APPENV_PYTHON to one." >&2
      exit 69
    fi
    p=python3.$n
  fi
elif case $p in */*) ! [ -f "$p" ] || ! [ -x "$p" ];; *) ! command -v "$p";; esac >/dev/null 2>&1
then
  echo "appenv: error: APPENV_PYTHON=$p is not a program. Point it at a Python 3.8 or newer," \
    "or unset it." >&2
  exit 69
fi
exec "$p" -I -S -c '
import marshal, posix, sys
memo, key, path = sys.argv[1:4]
source = open(path, "rb").read()
cache = code = None
try:
    e = posix.environ
    cache = e.get(b"XDG_CACHE_HOME", b"")
    cache = (cache if cache[:1] == b"/" else (e.get(b"HOME") or __import__("pwd").getpwuid(
        posix.getuid()).pw_dir.encode()) + b"/.cache").decode(sys.getfilesystemencoding(),
        "surrogateescape") + "/appenv/bytecode/{}-{:x}-{}".format(
        sys.implementation.cache_tag, sys.hexversion, len(source))
    with open(cache, "rb") as f:
        cached = f.read()
    if cached[:len(source)] == source:
        code = marshal.loads(cached[len(source):])
        code.co_name
except Exception:
    code = None
fresh = code is None
code = code if code else compile(source, path, "exec")
m = type(sys)("appenv")
m.__file__, m.STARTUP = path, (memo, key, (cache, source, code) if fresh else None)
exec(code, m.__dict__)
status = m.main(sys.argv[3:])
try:
    sys.stdout.flush()
    sys.stderr.flush()
except Exception:
    status = status or 120
posix._exit(status or 0)
' "$m" "$k" "$0" "$@"
'''

# Then Python runs isolated and without site-packages (-I -S: a plain start costs 40 ms where
# site-packages is large, this one 9 ms), from bytecode cached in ~/.cache/appenv/bytecode,
# keyed by the file's content rather than its path, so that a fresh clone does not compile it
# again (30 ms). STARTUP, set by those lines, is all they pass on: (the memo of interpreters to
# update, or "" when the interpreter came from it; the PATH it is for; (cache file, source,
# code) when the bytecode is to be cached, else None). A command that returns exits without
# tearing the module down (1-2 ms); every file it wrote is closed by then. `python3 appenv`
# works too.

__doc__ = """appenv: run a repository's tools from the environment its uv.lock pins.

Copy this file into a project as `appenv`, next to pyproject.toml and uv.lock, and link each
tool to it (`ln -s appenv http`). This is what it does, in order:

0. The lines at the top, for sh, pick the Python that runs this file: the one remembered for
   this PATH (no version manager's shim on every run), else python3, else the newest python3.X;
   under a python3 older than 3.8 it runs again under the newest python3.X (`newer_python`).
1. Dispatch on the name it was invoked under: `appenv` (or `appenv.py`) takes a subcommand;
   any other name is a binary to run from the project's production environment.
2. Find the project: the directory of the real launcher file, every symlink resolved (or, when
   appenv is an installed command, the working directory or `--project DIR`).
3. Fingerprint what decides the environment's content: uv.lock, pyproject.toml (the root's and
   the workspace members'), .python-version, the selected extras and groups, and this
   launcher's format. When the environment with that fingerprint is ready and intact, exec the
   binary from it. That is the warm path: no subprocess, no network, no write, no TOML.
4. Otherwise (the cold path) work out the build plan, or recall it from appenv's cache: read
   pyproject.toml, find uv (APPENV_UV, PATH, appenv's cache, or install it there with pip;
   what was found is remembered too). appenv's own libraries (tomli before Python 3.11;
   packaging for the lock summary, init and migrate) come from the interpreter, appenv's cache,
   or are installed there with the user's configuration, not the project's (`library`).
   Holding a file lock, build the environment where it will live with
   `uv sync --frozen --no-dev`, mark it ready last, point `current` at it, and remove
   environments beyond the few kept.
5. Exec the binary in the caller's directory, with the caller's arguments and APPENV_BASEDIR set
   to the project root.

Documentation: docs/ in the appenv repository, and `./appenv help COMMAND`.
"""

import posix
import sys

# The warm path (a symlink whose environment is ready), the build path (`uv sync` with a
# remembered plan) and `update-lockfile` with nothing to change import nothing that the lines
# at the top have not, and instead:
#   os, os.path, errno  (2.0 ms: os.environ loads the abstract base classes)  -> posix
#   subprocess          (17 ms)                                                -> posix_spawn
#   hashlib             (loads OpenSSL)                                        -> _blake2
#   tomllib or tomli    (10 ms), json (1.5 ms)      -> digests and plans remembered in files
# The rest of the file uses os as usual: `Later` imports it on first use. A test in
# tests/test_bootstrap.py checks what the two paths import.


class Later:
    """A module imported where it is first used, and a global from then on."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attribute):
        module = __import__(self.name)
        globals()[self.name] = module
        return getattr(module, attribute)


os, errno = Later("os"), Later("errno")

__version__ = "0.1.0"

FORMAT = "3"  # the layout of environments and records; part of every fingerprint
MIN_UV = "0.8.0"  # the oldest uv whose options appenv relies on
KEEP = 3  # environments kept for switching back and for running processes
LAUNCHER_NAMES = ("appenv", "appenv.py")
READY = "appenv-ready"  # written into an environment last, once it is complete
PARTIAL = "appenv-partial"  # a `prepare --no-install-*` build, to be completed in place
STARTUP = globals().get("STARTUP")  # see the comment after the lines at the top


def main(argv=None, installed=False):
    """Dispatch on the invoked name, like rustup's proxies; return an exit status."""
    argv = list(sys.argv if argv is None else argv)
    name = argv[0].rpartition("/")[2]
    try:
        if sys.version_info < (3, 8):  # this file compiles under 3.6 and 3.7 to say so
            return newer_python(argv, installed)
        if None in (sys.stdin, sys.stdout, sys.stderr):
            standard_streams()
        memo, path, bytecode = STARTUP or ("", "", None)
        if bytecode:
            remember_bytecode(*bytecode)
        if memo and writable(memo):
            remember_interpreter(memo, path)
        if installed or name in LAUNCHER_NAMES:
            return Command.dispatch(argv[1:], installed)
        return launch(launcher_root(), name, argv[1:])
    except Problem as problem:
        problem.report()
        return problem.status
    except KeyboardInterrupt:
        say("interrupted")
        return 130


def standard_streams():
    """/dev/null in place of a closed stdin, stdout or stderr (Python made it None), as a
    daemon may start appenv: else the next file opened would take the descriptor, and uv's
    progress, or the binary's output, would go into it. A command's own output to a closed
    stdout is still an error (`show`)."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is None:
            null = posix.open("/dev/null", posix.O_RDWR)
            if null == fd:
                posix.set_inheritable(fd, True)  # for uv and the binary too
            else:
                posix.dup2(null, fd)
                posix.close(null)
            setattr(sys, name, open(fd, mode, closefd=False))
            CLOSED.append(name)


CLOSED = []  # the standard streams that were closed when appenv started


def show(text):
    """Write TEXT, a command's output, to stdout now, rather than leave it to Python at exit.
    When it cannot be written: 141 if the reader went away (`./appenv list | head -1`),
    quietly, as a shell says SIGPIPE; 74 if stdout is on a full disk, or closed, saying so."""
    try:
        if "stdout" in CLOSED and text:
            raise OSError(9, "stdout is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as e:
        posix.dup2(posix.open("/dev/null", posix.O_WRONLY), 1)  # what is left unwritten: dropped
        if isinstance(e, BrokenPipeError):
            raise Problem(141, "")
        raise Problem(74, "cannot write the output: {}".format(e.strerror))


def launcher_root():
    """The project root: the directory of the real launcher file, every link resolved."""
    return launcher_file().rpartition("/")[0] or "/"


def launcher_file():
    """This launcher's own file, every link resolved."""
    return real_path(__file__)


def launch(root, name, args):
    """Run binary NAME from the production environment."""
    return production_environment(root, name).exec(name, args)


def production_environment(root, binary=None):
    """The warm path: the environment for the files as they are, if ready; else build it."""
    home = Home(root, binary)
    env = home.environment(Selection.from_environ(), compute=False)
    if env and env.is_ready():
        return env
    if env is None and no_sync():  # as it is: no TOML read, nothing installed
        found = home.current()
        if found and found.hold():
            return found
    if env is None:  # pyproject.toml edited since: what uv installs may be the same
        env = home.environment(Selection.from_environ())
        if env.is_ready():
            home.save_relevant()
            return env
    if no_sync():  # as it is, even stale or changed by hand; built only if none (docs/)
        found = env if exists(env.marker) else home.current()
        if found and found.hold():
            return found
    return build(root, env)


class Home:
    """The directory that holds a project's environments: .appenv/ or under APPENV_HOME."""

    FILES = ("pyproject.toml", "uv.lock", ".python-version")  # the root's, in every fingerprint

    def __init__(self, root, binary=None):
        self.root = root
        self.binary = binary  # the binary this run is to start: `Environment.is_ready` checks it
        self.learned = {}  # pyproject.toml digests worked out by this run (`save_relevant`)
        base = getenv("APPENV_HOME")
        if base:
            if not base.startswith("/"):  # as uv takes UV_PROJECT_ENVIRONMENT
                base = root.rstrip("/") + "/" + base
            key = digest(fsencode(root))[:12]
            self.path = "{}/{}-{}".format(real_path(base), root.rpartition("/")[2], key)
        else:
            self.path = root.rstrip("/") + "/.appenv"
        self.envs = self.path + "/envs"

    def environment(self, selection, compute=True):
        """The environment for the project's files as they are now, and this selection. Of a
        pyproject.toml only what uv installs depends on counts (`pyproject_digest`); without
        COMPUTE, None where that is not remembered for its bytes yet."""
        def counted(name, full, data):
            return self.pyproject_digest(name, full, data, compute)

        base = fingerprint(self.root, b"appenv %s\0%s" % (FORMAT.encode(), selection.encode()),
                           self.FILES, counted)
        members = self.members(base) if base else ()  # workspace members: theirs count too
        key = fingerprint(self.root, base.encode(), members, counted) if members else base
        return Environment(self, key, selection, base) if key else None

    def pyproject_digest(self, name, full, data, compute):
        """What stands for pyproject.toml NAME, whose bytes have the digest FULL, in the
        fingerprint: the digest of the first bytes this home saw with the same relevant part
        (what uv installs depends on, `pyproject_digest`), so that files that differ only in
        other tools' tables share an environment. Remembered in the home (the warm path looks
        only there); else worked out when COMPUTE, else None. A home that has seen no file yet
        takes FULL at once: uv can start syncing, and `settle` parses meanwhile."""
        value = read_memo(self.path + "/pyproject", full)
        if value is None and compute:
            relevant = None
            if exists(self.path + "/relevant"):
                relevant = remembered_pyproject_digest(self.root, name, full, data)
                value = read_memo(self.path + "/relevant", relevant)
            value = value or full
            self.learned[full] = [name, data, relevant, value]
        return value

    def settle(self):
        """Work out the relevant part of each pyproject.toml that `pyproject_digest` took as
        the first of its kind without parsing it (while uv syncs)."""
        for full, learned in self.learned.items():
            if learned[2] is None:
                learned[2] = remembered_pyproject_digest(self.root, learned[0], full, learned[1])

    def members(self, base):
        """The pyproject.toml files of the workspace members and path dependencies, recorded
        for these root files by a build (see `member_files`)."""
        try:
            with open("{}/members/{}".format(self.path, base), "rb") as f:
                return [m for m in fsdecode(f.read()).split("\n") if m and "\0" not in m]
        except OSError:
            return ()

    def identities(self, env):
        """Device, inode, size, mtime and ctime of each file ENV's fingerprint reads: another
        write in between shows, though the content be the same again."""
        found = []
        for name in self.FILES + tuple(self.members(env.base)):
            try:
                st = posix.stat("{}/{}".format(self.root, name))
                found.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            except OSError:
                found.append(None)
        return found

    def save_relevant(self):
        """Remember in the home what `pyproject_digest` worked out, for the warm path: what
        stands for each file, and for each relevant part the file that stands for it. Only
        where a build made the home (a read-only one is left as it is), and not for a file
        that is not TOML (uv says what is wrong; it is parsed again next time)."""
        self.settle()
        for full, (_name, _data, relevant, value) in self.learned.items():
            if relevant == full or not exists(self.path):
                continue
            try:
                write_memo(self.path + "/pyproject", full, value, 50)
                if read_memo(self.path + "/relevant", relevant) is None:
                    write_memo(self.path + "/relevant", relevant, value, 50)
            except OSError:
                pass
        self.learned = {}

    def current(self):
        """The environment `current` points to, if it is complete."""
        try:
            target = posix.readlink(self.path + "/current")
        except OSError:
            return None
        env = Environment(self, target.rpartition("/")[2], None)
        return env if exists(env.marker) else None


class Environment:
    """A virtual environment under envs/<fingerprint>, never changed once marked ready."""

    def __init__(self, home, key, selection, base=None):
        self.home, self.key, self.selection, self.base = home, key, selection, base or key
        self.path = "{}/{}".format(home.envs, key)
        self.marker = "{}/{}".format(self.path, READY)

    def is_ready(self, hold=True):
        """Complete, its interpreter present, and no package or binary added, removed or (the
        one to run) changed since."""
        try:
            fd = posix.open(self.marker, posix.O_RDONLY)
        except OSError:
            return False
        # The marker says where site-packages is and its mtime when the build ended: pip, uv
        # pip or a hand-made removal changes that directory, and so this one stat.
        marker = Record.parse("environment", posix.read(fd, 4096))
        try:
            site = marker.get("site-packages")
            ready = (site.startswith(self.path + "/")  # a copy of the project: venvs do not move
                     and posix.stat(site).st_mtime_ns == int(marker.get("site-packages-mtime"))
                     and exists(self.path + "/bin/python")  # follows the link: Python gone?
                     and self.binaries_intact(int(marker.get("bin-mtime")),
                                              int(marker.get("newest-binary-mtime"))))
        except (AttributeError, TypeError, ValueError, OSError):  # no marker of this format
            ready = False
        if ready and hold:
            return self.hold(fd)
        posix.close(fd)
        return ready

    def binaries_intact(self, directory_mtime, newest):
        """bin/ as the build left it: a console script removed or added changes its mtime; the
        one about to run, edited in place, is newer than any the build wrote."""
        if posix.stat(self.path + "/bin").st_mtime_ns != directory_mtime:
            return False
        if self.home.binary:
            try:
                return posix.lstat(self.path + "/bin/" + self.home.binary).st_mtime_ns <= newest
            except OSError:
                pass  # never one of this environment: 127 when it is run
        return True

    def python_denied(self):
        """The interpreter of this environment, built, when this user may not run it; else
        None (it is there, or it has gone: then it is rebuilt)."""
        try:
            posix.stat(self.path + "/bin/python")
        except PermissionError:
            return posix.readlink(self.path + "/bin/python") if exists(self.marker) else None
        except OSError:
            pass
        return None

    def python(self):
        """The Python version the environment was built with, as its marker says."""
        marker = Record.read("environment", self.marker)
        return marker and marker.get("python")

    def hold(self, fd=None):
        """Take a shared lock that the binary inherits across exec: garbage collection and
        `reset` skip any environment a running process holds, whatever `keep` says."""
        import fcntl
        if fd is None:
            try:
                fd = posix.open(self.marker, posix.O_RDONLY)
            except OSError:
                return False
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:  # removed while we waited for the lock (`discard_unless_in_use`)?
            if posix.stat(self.marker).st_ino == posix.fstat(fd).st_ino:
                posix.set_inheritable(fd, True)
                return True
        except OSError:
            pass
        posix.close(fd)
        return False

    def exec(self, name, args):
        """Replace this process with binary NAME from the environment."""
        path = "{}/bin/{}".format(self.path, name)
        environ = dict(posix.environ)  # what os.environ is made from; appenv changes neither
        environ[b"APPENV_BASEDIR"] = fsencode(self.home.root)
        default_signals()
        try:
            posix.execve(path, [path] + list(args), environ)
        except FileNotFoundError:
            raise Problem(127, no_such_binary(self, name))
        except OSError as e:  # not executable, not a program (ENOEXEC), ...
            raise Problem(126, "cannot run {}: {}".format(path, e.strerror))


def fingerprint(root, prefix, files, counted=None):
    """A digest of everything that decides what an environment holds: PREFIX and the files.
    With COUNTED, a pyproject.toml counts by COUNTED(name, digest of its bytes), and the
    fingerprint is None when that is."""
    h = hasher()
    h.update(prefix)
    chunk = bytearray(1 << 16)  # read into one small buffer: a 1 MB uv.lock costs 2 ms, not 3
    view = memoryview(chunk)
    for name in files:
        h.update(b"\0%s\0" % fsencode(name))
        try:  # non-blocking: a FIFO or a device is not read (the build says what it is)
            fd = posix.open("{}/{}".format(root, name), posix.O_RDONLY | posix.O_NONBLOCK)
        except FileNotFoundError:
            h.update(b"\0missing")
            continue
        except OSError:
            h.update(b"\0unreadable")
            continue
        st = posix.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:  # before open(): it refuses a directory
            posix.close(fd)
            h.update(b"\0not a file")
            continue
        with open(fd, "rb", buffering=0) as f:
            whole = hasher() if counted and name.endswith("pyproject.toml") else h
            whole.update(b"%s %d\0" % (FORMAT.encode(), st.st_size))  # the rules' version too
            read = [] if whole is not h else None  # a pyproject.toml's bytes, to parse as hashed
            try:
                size = f.readinto(chunk)
                while size:
                    whole.update(view[:size])
                    if read is not None:
                        read.append(bytes(view[:size]))
                    size = f.readinto(chunk)
            except OSError:
                h.update(b"\0unreadable")
                continue
        if whole is not h:
            part = counted(name, whole.hexdigest(), b"".join(read))
            if part is None:
                return None
            h.update(part.encode())
    return h.hexdigest()[:24]


def hasher():
    try:  # builtin, and far cheaper to import than hashlib, which loads OpenSSL
        from _blake2 import blake2b
    except ImportError:
        from hashlib import blake2b
    return blake2b(digest_size=16)


def digest(data):
    h = hasher()
    h.update(data)
    return h.hexdigest()


class Record:
    """What appenv keeps in a file (an environment's marker, a plan, the uv found): `name =
    value` lines, read by name, the first `format = KIND FORMAT`. A name may repeat (a list)."""

    def __init__(self, kind, fields=()):
        self.kind, self.fields = kind, list(fields)

    @classmethod
    def parse(cls, kind, data):
        """The record in DATA (bytes); None when it is of another kind or format, or damaged."""
        fields = []
        for line in fsdecode(data).split("\n"):
            name, equals, value = line.partition(" = ")
            if equals:
                fields.append((name, value))
        if fields[:1] != [("format", "{} {}".format(kind, FORMAT))]:
            return None
        return cls(kind, fields[1:])

    @classmethod
    def read(cls, kind, path):
        try:
            with open(path, "rb") as f:
                return cls.parse(kind, f.read())
        except OSError:
            return None

    def get(self, name):
        return next((value for key, value in self.fields if key == name), None)

    def all(self, name):
        return [value for key, value in self.fields if key == name]

    def write(self, path):
        """Whole or not at all, not durable: a record lost with the power is worked out again.
        A value with a line break cannot be kept: ValueError."""
        lines = ["format = {} {}".format(self.kind, FORMAT)]
        for name, value in self.fields:
            if "\n" in value:
                raise ValueError("a line break in " + name)
            lines.append("{} = {}".format(name, value))
        write_atomically(path, "\n".join(lines) + "\n", durable=False)


class Selection:
    """What the environment holds beyond the project's dependencies: extras and groups.

    APPENV_EXTRAS and APPENV_GROUPS replace the lists in [tool.appenv] (None: not set, the
    configured lists apply). The interpreter request in UV_PYTHON counts too.
    """

    def __init__(self, extras=None, groups=None):
        self.extras = None if extras is None else sorted(set(extras))
        self.groups = None if groups is None else sorted(set(groups))

    @classmethod
    def from_environ(cls):
        return cls(names(getenv("APPENV_EXTRAS")), names(getenv("APPENV_GROUPS")))

    def encode(self):
        text = ";".join("-" if f is None else ",".join(f) for f in (self.extras, self.groups))
        return fsencode(text + ";" + getenv("UV_PYTHON", ""))  # undecodable bytes too

    def resolve(self, config):
        """The extras and groups to sync, given [tool.appenv]."""
        return (config.extras if self.extras is None else self.extras,
                config.groups if self.groups is None else self.groups)

    def adding(self, config, extras, groups):
        """This selection with more extras or groups, as the variables would say it."""
        current_extras, current_groups = self.resolve(config)
        return Selection(set(current_extras) | set(extras) if extras else self.extras,
                         set(current_groups) | set(groups) if groups else self.groups)

    def variables(self):
        """The APPENV_EXTRAS and APPENV_GROUPS that select this, for a message."""
        return " ".join("{}={}".format(name, ",".join(value)) for name, value in
                        (("APPENV_EXTRAS", self.extras), ("APPENV_GROUPS", self.groups))
                        if value is not None)


def names(value):
    """A comma-separated list, or None when the variable is not set."""
    return None if value is None else sorted({n.strip() for n in value.split(",") if n.strip()})


def no_sync():
    return truthy(getenv("APPENV_NO_SYNC"))


def truthy(value):
    return (value or "").lower() not in ("", "0", "false", "no")


class Problem(Exception):
    """A condition a user can cause: a message on stderr and an exit status, no traceback."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message

    def report(self):
        if self.message:
            say(self.message, error=True)


QUIET = []  # `-q`: appenv's own progress lines dropped, and uv given --quiet (errors stay)
VERBOSE = []  # `-v`, or APPENV_VERBOSE: each uv command said before it runs


def announce(command):
    if VERBOSE or getenv("APPENV_VERBOSE"):
        sys.stderr.write("appenv: running {}\n".format(" ".join(command)))


def say(message, error=False):
    """appenv's own words, always on stderr: stdout belongs to the binary."""
    if QUIET and not error:
        return
    prefix = paint("error", "1;31") if error else "appenv"
    sys.stderr.write("{}: {}\n".format(prefix, message))
    sys.stderr.flush()


def paint(text, code):
    if getenv("NO_COLOR") or not sys.stderr.isatty():
        return text
    return "\033[{}m{}\033[0m".format(code, text)


def getenv(name, default=None):
    """os.environ.get: a variable decoded as `os` does."""
    value = posix.environ.get(fsencode(name))
    return default if value is None else fsdecode(value)


def fsencode(text):
    return text.encode(sys.getfilesystemencoding(), "surrogateescape")


def fsdecode(data):
    return data.decode(sys.getfilesystemencoding(), "surrogateescape")


def read_memo(directory, name):
    """A digest remembered in DIRECTORY/NAME, or None (also when damaged: 32 hex digits)."""
    try:
        with open("{}/{}".format(directory, name), "rb") as f:
            value = f.read(64).decode("ascii")
    except (OSError, UnicodeDecodeError):
        return None
    if len(value) == 32 and not value.strip("0123456789abcdef"):
        return value
    return None


def write_memo(directory, name, value, keep):
    """Write the memo DIRECTORY/NAME, not durably (one lost is worked out again), and keep
    only the KEEP newest there."""
    make_dirs(directory)
    write_atomically(directory + "/" + name, value, durable=False)
    prune(directory, keep)


def writable(path):
    """Whether PATH can be created: its directory, or the first that exists above, is writable
    (a read-only home spares the cold path on every run)."""
    directory = path.rpartition("/")[0]
    while directory and not exists(directory):
        directory = directory.rpartition("/")[0]
    return posix.access(directory or "/", posix.W_OK)


def exists(path):
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def real_path(path):
    """os.path.realpath: the absolute path, every symbolic link resolved, each in turn."""
    if not path.startswith("/"):
        path = posix.getcwd() + "/" + path
    todo = path.split("/")[::-1]  # the components left, the next one last
    done = ""  # resolved so far; "" is the root
    for _link in range(40):  # the kernel's limit too (ELOOP)
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                done = done.rpartition("/")[0]
                continue
            try:
                target = posix.readlink(done + "/" + part)
            except OSError:  # not a link, or not there: taken as it is, as os.path does
                done += "/" + part
                continue
            if target.startswith("/"):
                done = ""
            todo.extend(target.split("/")[::-1])
            break
        else:
            return done or "/"
    return os.path.realpath(path)


# ---------------------------------------------------------------------------------------------
# The build path: what a first run needs when this machine built an environment for the same
# files before (a fresh clone, a worktree, a deploy, a lock switched to): the plan recalled,
# `uv sync`, the environment marked ready. Like the warm path it uses `posix`, not `os`, so that
# such a run costs little more than `uv sync` itself.


def build(root, env, partial=()):
    """Make environment ENV ready: wait for another appenv building it, or build it in place."""
    python = env.python_denied()
    if python:
        raise Problem(126, (
            "the environment {} is built, but this user cannot run its Python {}: Permission "
            "denied. uv built it with an interpreter this user cannot reach (one in another "
            "user's home, pyenv's or uv's own, say). Make it readable by every user, or build "
            "with one that is ([tool.appenv] python = \"/usr/bin/python3\", say), then run "
            "`{} prepare` as the owner; or set APPENV_HOME=DIR to build one for this user."
        ).format(env.path, python, launcher_command()))
    plan = Plan.recall(Plan.key_for(root, env.selection))
    if plan is None or not (is_file(root + "/pyproject.toml") and is_file(root + "/uv.lock")):
        Project(root).check_present()  # before making .appenv: a missing file leaves nothing
    if env.is_ready(hold=False) and not writable(env.home.path + "/lock"):
        return env  # prepared, and read-only here (a deploy): `current` stays as it is
    with Builder(env.home) as builder:  # a home that cannot be written: 73, before any work
        try:
            env = builder.ensure(root, env, partial, plan)
        except OSError as e:  # a full or failing disk as the build ends: nothing marked ready
            raise builder.cannot_write(e)
        env.home.save_relevant()
    return env


class Plan:
    """How to build an environment: the uv to run, the `uv sync` options, how many to keep.

    Working it out parses pyproject.toml, imports packaging and asks uv for its version: some
    20 ms, as long as the build itself. It depends only on pyproject.toml, the selection and
    which uv is at hand, not on uv.lock, so it is remembered in appenv's cache under a digest
    of the first two: a fresh clone of a project built before on this machine (a CI runner, a
    deploy, a worktree), even with a new uv.lock, goes straight to `uv sync`. uv reports what
    is wrong with a uv.lock, and `Project.diagnose` says it again with the recipe.
    """

    def __init__(self, key, uv, options, keep, member_patterns):
        self.key, self.uv, self.options, self.keep = key, uv, options, keep
        self.member_patterns = member_patterns

    @staticmethod
    def key_for(root, selection):
        return fingerprint(root, b"plan %s\0%s" % (FORMAT.encode(), selection.encode()),
                           ("pyproject.toml",))

    @classmethod
    def of(cls, root, selection):
        key = cls.key_for(root, selection)
        return cls.recall(key) or cls.work_out(root, selection, key)

    @classmethod
    def work_out(cls, root, selection, key, recall=True):
        project = Project(root)
        project.check(lock=False)  # a missing or broken uv.lock is for the build to report
        config = project.config()
        uv = Uv.find(root, config.required_uv, recall=recall)
        plan = cls(key, uv, config.sync_options(selection), config.keep,
                   project.member_patterns())
        if cls.key_for(root, selection) == key:  # not what pyproject.toml was a moment ago
            plan.remember()
        return plan

    @staticmethod
    def path(key):
        # per launcher too: two versions of appenv on one machine do not evict each other's
        return "{}/plans/{}-{}".format(cache_dir(), key, launcher_digest()[:12])

    @classmethod
    def recall(cls, key):
        plan = Record.read("plan", cls.path(key))
        uv = plan and UvBinary.recall(plan)
        try:
            keep = int(plan.get("keep"))
        except (AttributeError, TypeError, ValueError):
            return None
        members = [tuple(m.split("\t", 1)) for m in plan.all("member")]
        return cls(key, uv, plan.all("option"), keep, members) if uv else None

    @classmethod
    def last(cls):
        """The plan worked out last on this machine, if it still holds: what a project not
        built here before most likely needs too."""
        try:
            with open(cls.path("last"), "rb") as f:
                return cls.recall(f.read(100).decode("ascii"))
        except (OSError, UnicodeDecodeError, Problem):
            return None

    def forget(self):
        try:
            posix.remove(self.path(self.key))
        except (OSError, Problem):
            pass

    def remember(self):
        fields = self.uv.record() + [("keep", str(self.keep))]
        fields += [("option", option) for option in self.options]
        fields += [("member", "\t".join(pattern)) for pattern in self.member_patterns]
        try:
            make_dirs(self.path(self.key).rpartition("/")[0])
            Record("plan", fields).write(self.path(self.key))
            write_atomically(self.path("last"), self.key, durable=False)  # see `last`
            prune(self.path(self.key).rpartition("/")[0], 200)
        except (OSError, ValueError, Problem):
            pass  # a cache: the next build works the plan out again


def remembered_pyproject_digest(root, name, full, data):
    """`pyproject_digest` of ROOT/NAME, whose bytes DATA have the digest FULL: remembered in
    appenv's cache (a fresh clone of files seen before parses nothing), else worked out."""
    try:
        memos = cache_dir() + "/pyproject"
    except Problem:
        memos = None  # no home: parsed each time a build needs it
    value = memos and read_memo(memos, full)
    if value is None:
        value = pyproject_digest(root + "/" + name, data)
        if value is None:
            return full  # not TOML: uv reports it; meanwhile every byte counts
        if memos:
            try:
                write_memo(memos, full, value, 200)
            except OSError:
                pass
    return value


def uv_situation(uv_path):
    """What decides which uv `Uv.find` picks, and the picked uv's own file: while these are
    the same, what it found holds (`UvBinary.recall`)."""
    explicit = getenv("APPENV_UV", "")
    on_path = which("uv") or ""
    return [("uv.APPENV_UV", explicit), ("uv.on-PATH", on_path),
            ("uv.first-identity", file_identity(explicit or on_path)),
            ("uv.identity", file_identity(uv_path))]


class UvCannotStart(Problem):
    """uv could not be started at all (gone, not executable), as against uv failing."""


class UvBinary:
    """A uv binary, as `Uv.find` found it or a plan recalls it: PATH, VERSION and HOW found."""

    def __init__(self, path, version, how, remembered=False):
        self.path, self.version, self.how = path, version, how
        self.remembered = remembered  # not looked for by this run: it may have gone since

    def record(self):
        """The fields a plan, or the memo of `Uv.find`, keeps of this uv."""
        return [("uv.path", self.path), ("uv.version", self.version),
                ("uv.how", self.how)] + uv_situation(self.path)

    @classmethod
    def recall(cls, record):
        """The uv RECORD keeps, if what decided it holds: else None, to be looked for again."""
        path = record.get("uv.path") if record else None
        situation = uv_situation(path) if path is not None else None
        if situation is None or [(k, record.get(k)) for k, _ in situation] != situation:
            return None
        return cls(path, record.get("uv.version"), record.get("uv.how"), remembered=True)

    def command(self, *args):
        return [self.path] + ["--quiet"] * bool(QUIET) + list(args)

    def run(self, args, env=None, step=None):
        """Run uv with output live on stderr; a failure is uv's status plus which step failed."""
        return self.finish(self.start(args, env), step)

    def start(self, args, env=None, pass_fds=()):
        """Start uv ARGS, its output live on stderr (stdout belongs to the binary)."""
        command = self.command(*args)
        announce(command)
        try:
            return spawn(command, [(posix.POSIX_SPAWN_DUP2, 2, 1)], env, pass_fds)
        except OSError as e:  # removed, or no longer executable, since it was found
            raise UvCannotStart(69, "cannot run uv {}: {}".format(self.path, e.strerror))

    @staticmethod
    def finish(pid, step=None):
        status = wait(pid)
        if status != 0 and step:
            raise Problem(status, "{} failed (uv exited with status {})".format(step, status))
        return status

    def exec(self, args, cwd=None):
        command = self.command(*args)
        announce(command)
        if cwd:
            posix.chdir(cwd)
        default_signals()
        posix.execv(self.path, command)


def launcher_digest(known=[]):
    """The digest of this launcher's file, read once (a plan's name and its situation)."""
    if not known:
        with open(launcher_file(), "rb") as f:
            known.append(digest(f.read()))
    return known[0]


def file_identity(path):
    try:
        st = posix.stat(path)
    except OSError:
        return ""
    return "{}:{}:{}:{:o}".format(st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)


def cache_dir():
    """appenv's own cache: the uv it installed, its libraries, plans and bytecode (the lines at
    the top find it the same way). A relative XDG_CACHE_HOME is ignored, as the XDG
    specification says."""
    base = getenv("XDG_CACHE_HOME", "")
    if not base.startswith("/"):
        base = getenv("HOME")
        if not base:
            import pwd
            try:
                base = pwd.getpwuid(posix.getuid()).pw_dir
            except KeyError:  # a container's user without a passwd entry
                raise Problem(73, "appenv's cache has no place: user id {} has no home "
                              "directory. Set HOME or XDG_CACHE_HOME.".format(posix.getuid()))
        base += "/.cache"
    return base + "/appenv"


class Builder:
    """Holds the home's file lock while it builds; one builds, the others wait and reuse."""

    def __init__(self, home):
        self.home = home
        self.fd = None
        self.waited = False

    def __enter__(self):
        try:
            make_dirs(self.home.envs)
            ignore = self.home.path + "/.gitignore"
            if not exists(ignore):
                write_atomically(ignore, "# appenv's environments; never committed\n*\n",
                                 durable=False)
            self.fd = posix.open(self.home.path + "/lock", posix.O_RDWR | posix.O_CREAT, 0o644)
        except OSError as e:
            raise self.cannot_write(e)
        self.waited = lock_exclusively(self.fd, "waiting for another appenv to finish building "
                                       "in {} (the processes that hold {}/lock)".format(
                                           self.home.path, self.home.path))
        return self

    def __exit__(self, *exc):
        posix.close(self.fd)

    def cannot_write(self, e):
        """Exit 73 for a build that could not write: out of space, a failing disk, or no
        permission, each with what to do. Nothing was marked ready."""
        chosen = getenv("APPENV_HOME")
        where = self.home.path + (" (APPENV_HOME={})".format(chosen) if chosen else "")
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return Problem(73, (
                "{} is out of space ({}): the environment was not built. Free some space (old "
                "environments: `{} reset`; uv's cache: `uv cache prune`), then run again."
            ).format(where, e.strerror, launcher_command()))
        if e.errno == errno.EIO:
            return Problem(73, "{} is failing (input/output error{}): the environment was not "
                               "built. Check the disk, or set APPENV_HOME=DIR to build elsewhere."
                           .format(where, ", " + e.filename if e.filename else ""))
        if e.errno == errno.EROFS:
            return Problem(73, "{} is on a read-only file system: the environment for this "
                           "uv.lock is not built yet. Run `{} prepare` where it can be written "
                           "(before the deploy is made read-only), or set APPENV_HOME=DIR to "
                           "keep environments elsewhere.".format(where, launcher_command()))
        if e.errno not in (errno.EACCES, errno.EPERM):
            return Problem(73, "building in {} failed: {}{}: the environment was not built."
                           .format(where, e.strerror or e, " ({})".format(e.filename)
                                   if e.filename else ""))
        return Problem(73, (
            "cannot write {}: {}. The environment for this uv.lock is not built yet. Run "
            "`{} prepare` as the owner of {}, or set APPENV_HOME=DIR to keep environments "
            "elsewhere."
        ).format(where, e.strerror, launcher_command(), self.home.root))

    def ensure(self, root, env, partial, plan=None):
        for attempt in range(3):
            if attempt or self.waited:  # as the appenv we waited for, or uv, left the files
                env = self.home.environment(env.selection)
            if env.is_ready():  # built by the appenv we waited for; enough for partial too
                self.point_current(env)
                return env
            if exists(env.marker) and in_use(env.path, unknown=False):
                say("the environment {} was changed by hand (or lost its interpreter), but a "
                    "running process uses it: it is used as it is, and rebuilt once no process "
                    "holds it".format(env.path))
                env.hold()
                return env
            started = None  # a `uv sync` running already
            files = self.home.identities(env)  # as uv is to read them
            if plan is None or plan.key != Plan.key_for(root, env.selection):
                plan, started = self.plan_while_syncing(root, env, partial)
            members = member_files(root, plan.member_patterns)
            if list(self.home.members(env.base)) != members:
                # which members' pyproject.toml count for these root files (`Home.members`)
                write_memo(self.home.path + "/members", env.base, "\n".join(members), 50)
                env = self.home.environment(env.selection)
                if env.is_ready():
                    self.point_current(env)
                    return env
            if started is None:
                files = self.home.identities(env)  # with the members' files, as recorded
                if not exists(env.path + "/" + PARTIAL):
                    discard(env.path)  # a crashed or hand-broken build: never used, built again
            try:
                self.sync(env, root, plan, partial, started)
            except UvCannotStart:
                if not plan.uv.remembered:
                    raise
                plan.forget()  # its uv went (a wrapper's interpreter, say): look for uv again
                plan = Plan.work_out(root, env.selection, plan.key, recall=False)
                self.sync(env, root, plan, partial)
            latest = self.home.environment(env.selection)
            if latest.key != env.key or self.home.identities(env) != files:
                # even back as they were (a checkout of B, then of A, while uv read B)
                say("uv.lock or pyproject.toml changed during the build; building again")
                env = latest
                continue
            if partial:
                touch(env.path + "/" + PARTIAL)
                return env
            self.mark_ready(env, plan)
            if not env.is_ready():
                raise Problem(70, "the environment {} changed while appenv marked it ready"
                              .format(env.path))
            self.point_current(env)
            self.collect_garbage(plan.keep, env)
            return env
        raise Problem(75, "uv.lock keeps changing while appenv builds; try again")

    def plan_while_syncing(self, root, env, partial):
        """The plan for a pyproject.toml not built before, and the `uv sync` that serves it.

        Working the plan out parses pyproject.toml (importing tomllib alone takes 10 ms).
        Meanwhile uv syncs already, with the plan of the environment `current` points to (in a
        fresh clone, the plan worked out last on this machine): most often the same, as when
        a dependency was edited. When it is not the same, that sync is stopped and what it
        wrote discarded; the environment is marked ready only after a sync with the plan
        worked out, either way.
        """
        guess = None
        if not (partial or self.home.members(env.base) or exists(env.path + "/" + PARTIAL)):
            guess = self.current_plan()
        if guess is None or guess.member_patterns:
            return Plan.of(root, env.selection), None
        discard(env.path)
        try:
            started = self.start_sync(env, root, guess, partial)
        except UvCannotStart:
            return Plan.of(root, env.selection), None
        try:
            self.home.settle()
            plan = Plan.of(root, env.selection)
        except BaseException:
            stop(started)
            raise
        if (plan.uv.path, plan.options, plan.member_patterns) == (guess.uv.path, guess.options,
                                                                  []):
            return plan, started
        stop(started)
        discard(env.path)
        return plan, None

    def current_plan(self):
        """The plan the environment `current` points to was built with, else the plan worked
        out last on this machine (a fresh clone), if it still holds."""
        env = self.home.current()
        marker = env and Record.read("environment", env.marker)
        key = marker and marker.get("plan")
        return (Plan.recall(key) if key else None) or Plan.last()

    def start_sync(self, env, root, plan, partial):
        """Start `uv sync` into ENV with PLAN's options; `sync` waits for it."""
        environ = dict(posix.environ)
        environ[b"UV_PROJECT_ENVIRONMENT"] = fsencode(env.path)
        environ.pop(b"VIRTUAL_ENV", None)  # the project environment is ours; spare uv's warning
        args = ["sync", "--project", root] + plan.options + list(partial)
        # The lock travels with uv: if appenv is killed, a new build waits for uv to end.
        return plan.uv.start(args, env=environ, pass_fds=(self.fd,))

    def sync(self, env, root, plan, partial, started=None):
        try:
            pid = started or self.start_sync(env, root, plan, partial)
            plan.uv.finish(pid, step="building the environment {}".format(env.path))
        except UvCannotStart:
            raise
        except Problem as failure:
            try:
                Project(root).diagnose()  # uv.lock not valid TOML: exit 65 with the file and line
            except Problem as found:
                if found.status == 65:
                    raise
            raise failure  # uv's status: nothing else (no library at hand, say) replaces it

    def mark_ready(self, env, plan):
        """Record what `is_ready` compares against (and the plan, for `current_plan`), then
        make it visible in one rename."""
        site = site_packages(env.path)
        # Python writes bytecode of top-level modules into site-packages/__pycache__; make it
        # now so that the directory's mtime changes only when packages do.
        make_dirs(site + "/__pycache__")
        try:
            posix.remove(env.path + "/" + PARTIAL)
        except FileNotFoundError:
            pass
        version = "{}.{}.{}".format(*sys.version_info[:3])
        try:
            with open(env.path + "/pyvenv.cfg") as f:
                for line in f:
                    key, _, value = line.partition("=")
                    if key.strip() in ("version_info", "version"):
                        version = value.strip()
        except OSError:
            pass
        bindir = env.path + "/bin"
        newest = max([posix.lstat(bindir + "/" + entry).st_mtime_ns
                      for entry in posix.listdir(bindir)] + [0])
        marker = Record("environment", [
            ("fingerprint", env.key), ("site-packages", site),
            ("site-packages-mtime", str(posix.stat(site).st_mtime_ns)), ("python", version),
            ("plan", plan.key), ("bin-mtime", str(posix.stat(bindir).st_mtime_ns)),
            ("newest-binary-mtime", str(newest))])
        # uv writes without fsync: after a power loss its files may be empty. Flush them all
        # (one sync costs what an fsync of the marker did) before the marker says they are
        # there. A marker lost with the power only means a rebuild.
        posix.sync()
        marker.write(env.marker)

    def point_current(self, env):
        link = self.home.path + "/current"
        target = "envs/" + env.key
        try:
            pointed = posix.readlink(link)
        except OSError:
            pointed = None
        if pointed != target:
            temporary = link + ".tmp-{}".format(posix.getpid())
            try:
                posix.remove(temporary)
            except FileNotFoundError:
                pass
            posix.symlink(target, temporary)
            posix.replace(temporary, link)
        touch(env.marker)  # recency, for garbage collection

    def collect_garbage(self, keep, current):
        """Keep the `keep` most recently used; never current, never one a process runs in."""
        ready, other = [], []
        for entry in posix.listdir(self.home.envs):
            path = self.home.envs + "/" + entry
            if entry == current.key:
                continue
            try:
                ready.append((posix.stat(path + "/" + READY).st_mtime_ns, path))
            except OSError:
                other.append(path)  # crashed builds, trash, partial builds of other files
        ready.sort(reverse=True)
        for _mtime, path in ready[keep - 1:]:
            discard_unless_in_use(path)
        for path in other:
            discard(path)


def member_files(root, patterns):
    """The pyproject.toml files that PATTERNS (see `Project.member_patterns`) find now, relative
    to ROOT. Globbed at each build, not remembered: a first build may lack the directories."""
    if not patterns:
        return []  # not a workspace: spare the import of glob (and so of re and os)
    import glob
    directories = set()
    for kind, pattern in patterns:
        found = [os.path.join(root, pattern)]
        if kind != "path":
            found = glob.glob(os.path.join(glob.escape(root), pattern))
        if kind == "exclude":
            directories.difference_update(found)
        else:
            directories.update(found)
    files = []
    for directory in directories:
        path = os.path.normpath(os.path.join(directory, "pyproject.toml"))
        regular_file(path)  # uv would block on a FIFO
        if os.path.isfile(path) and path != os.path.join(root, "pyproject.toml"):
            files.append(os.path.relpath(path, root))
    return sorted(files)


def site_packages(env_path):
    lib = env_path + "/lib"
    for entry in sorted(posix.listdir(lib)):
        candidate = "{}/{}/site-packages".format(lib, entry)
        if is_directory(candidate):
            return candidate
    raise Problem(70, "uv built {} without a site-packages directory".format(env_path))


def discard_unless_in_use(path):
    """Remove an environment while holding its marker exclusively, unless a running process
    holds it, or runs from it without holding it (`runs_from`); True when removed. A run that
    waits for the marker meanwhile then sees it gone."""
    import fcntl
    try:
        fd = posix.open(path + "/" + READY, posix.O_RDONLY)
    except OSError:
        discard(path)  # not ready: no process runs from it
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if runs_from([path]) != set():
            return False
        discard(path)
        return True
    except BlockingIOError:
        return False
    finally:
        posix.close(fd)


def held(path):
    """Whether another process holds a lock on the file PATH (its exclusive lock is tried for
    a moment, no longer); None when PATH cannot be opened."""
    import fcntl
    try:
        fd = posix.open(path, posix.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        posix.close(fd)


def lock_exclusively(fd, waiting):
    """Take the exclusive lock on FD, saying WAITING first if another process holds it; True
    when it had to wait."""
    import fcntl
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        say(waiting)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True


def in_use(path, running=None, unknown=True):
    """Whether a process holds the environment (`Environment.hold`: its exclusive lock is
    tried for a moment, no longer) or runs from it (RUNNING: what `runs_from` found); UNKNOWN
    where /proc cannot tell (to keep an environment: yes; to repair one: the lock decides)."""
    holding = held(path + "/" + READY)  # None: no marker, not ready, so not in use
    if holding is not False:
        return bool(holding)
    if running is None:
        running = runs_from([path])
    return unknown if running is None else path in running


def runs_from(paths):
    """Which of PATHS a process runs from though it holds no lock there: a daemon closes the
    descriptors it inherited, the lock among them. On Linux, its command line, open files or
    mapped files are under the path (/proc); None where that cannot be known: kept, not
    guessed. One look at /proc for all of them."""
    prefixes = {fsencode(path.rstrip("/") + "/"): path for path in paths}
    found = set()

    def under(name):
        found.update(path for prefix, path in prefixes.items() if name.startswith(prefix))

    try:
        pids = [p for p in posix.listdir("/proc") if p.isdigit() and int(p) != posix.getpid()]
    except OSError:
        return None if sys.platform.startswith("linux") else found  # no /proc: the lock alone
    if posix.geteuid() != 0 and proc_hides_processes():
        return None  # other users' processes are not listed at all
    for pid in pids:
        base = "/proc/" + pid
        try:
            with open(base + "/cmdline", "rb") as f:
                for arg in f.read().split(b"\0"):
                    under(arg)
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        except OSError:
            return None
        try:
            for fd in posix.listdir(base + "/fd"):
                under(fsencode(posix.readlink("{}/fd/{}".format(base, fd))))
            with open(base + "/maps", "rb") as f:
                for line in f:  # address perms offset device inode path
                    under(line.split(None, 5)[-1])
        except OSError:
            continue  # another user's process, or ended: its command line decided
        if len(found) == len(prefixes):
            break
    return found


def proc_hides_processes(mountinfo=None, groups=None):
    """Whether /proc, as MOUNTINFO (/proc/self/mountinfo) says it is mounted (the last mount
    there is the one seen), leaves other users' processes out of its listing: hidepid=2
    (invisible) or 4 (ptraceable), unless this user is in its gid= group (GROUPS)."""
    try:
        mountinfo = read_bytes("/proc/self/mountinfo") if mountinfo is None else mountinfo
        groups = set(posix.getgroups()) | {posix.getegid()} if groups is None else groups
    except (Problem, OSError):
        return True  # cannot tell: what runs cannot be known either
    hides = False
    for line in (mountinfo or b"").splitlines():
        fields, _, source = line.partition(b" - ")
        fields, source = fields.split(), source.split()
        if len(fields) > 4 and fields[4] == b"/proc" and source[:1] == [b"proc"]:
            options = dict(o.partition(b"=")[::2] for o in b",".join(source[2:]).split(b","))
            hides = options.get(b"hidepid") in (b"2", b"4", b"invisible", b"ptraceable") and \
                not (options.get(b"gid", b"").isdigit() and int(options[b"gid"]) in groups)
    return hides


def discard(path):
    """Remove a directory so that a crash midway leaves nothing a run could take for whole."""
    try:
        if posix.lstat(path).st_mode & 0o170000 == 0o120000:  # a link: not what it points to
            posix.remove(path)
            return
    except OSError:
        return
    parent, _, name = path.rpartition("/")
    trash = "{}/.trash-{}-{}".format(parent, name.lstrip("."), posix.getpid())
    try:
        posix.rename(path, trash)
    except OSError:
        trash = path
    remove_tree(trash)


def remove_tree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def prune(directory, keep):
    """Remove all but the `keep` newest files of a cache directory."""
    names = posix.listdir(directory)
    if len(names) <= keep:
        return  # no stat of each
    entries = []
    for entry in names:
        try:
            entries.append((posix.stat(directory + "/" + entry).st_mtime_ns, entry))
        except OSError:
            pass
    for _mtime, entry in sorted(entries, reverse=True)[keep:]:
        try:
            posix.remove(directory + "/" + entry)
        except OSError:
            pass


def spawn(command, actions, env=None, pass_fds=()):
    """Start a command with posix_spawn: importing subprocess alone would cost 17 ms."""
    for fd in pass_fds:
        posix.set_inheritable(fd, True)
    try:
        return posix.posix_spawn(command[0], command, posix.environ if env is None else env,
                                 file_actions=actions, setsigdef=python_ignores())
    finally:
        for fd in pass_fds:
            posix.set_inheritable(fd, False)


def python_ignores():
    """The signals Python's start ignores, SIGPIPE and SIGXFSZ: an ignored signal stays
    ignored across exec, and a binary is to end on a closed pipe (`./tool | head`) as it does
    when run directly, or from a shell. So a spawn resets them, and so does an exec."""
    import _signal  # built in, and loaded by Python's start: not `signal`, which loads enum
    return _signal.SIGPIPE, _signal.SIGXFSZ


def default_signals():
    """Give the signals Python's start ignores their default action, before an exec."""
    import _signal
    for number in python_ignores():
        _signal.signal(number, _signal.SIG_DFL)


def stop(pid):
    """End a child that is no longer wanted, and reap it."""
    posix.kill(pid, 9)
    posix.waitpid(pid, 0)


def wait(pid):
    """The exit status of a child; 128+N when signal N killed it."""
    try:  # until it ends, but left unreaped: stop() cannot hit a process that took its pid
        posix.waitid(posix.P_PID, pid, posix.WEXITED | posix.WNOWAIT)
    except BaseException:  # Ctrl-C: do not leave the child running behind our back
        stop(pid)
        raise
    _, status = posix.waitpid(pid, 0)
    if posix.WIFSIGNALED(status):
        return 128 + posix.WTERMSIG(status)  # as a shell says it
    return posix.WEXITSTATUS(status)


# What the build path needs of `os` and `os.path`, from `posix`.


def which(name):
    """The executable NAME on PATH, as the shell finds it (shutil.which costs `os`)."""
    for directory in getenv("PATH", "/bin:/usr/bin").split(":"):
        path = (directory or ".") + "/" + name
        if is_file(path) and posix.access(path, posix.X_OK):
            return path
    return None


def is_file(path):
    return file_type(path) == 0o100000  # stat.S_IFREG


def is_directory(path):
    return file_type(path) == 0o040000  # stat.S_IFDIR


def file_type(path):
    try:
        return posix.stat(path).st_mode & 0o170000  # stat.S_IFMT
    except OSError:
        return None


def make_dirs(path):
    """os.makedirs(path, exist_ok=True)."""
    parent = path.rpartition("/")[0]
    if parent and not exists(parent):
        make_dirs(parent)
    try:
        posix.mkdir(path, 0o777)
    except FileExistsError:
        if not is_directory(path):
            raise


def touch(path):
    with open(path, "a"):
        posix.utime(path, None)


def write_atomically(path, data, durable=True, mode=None):
    """Write text (as UTF-8) or bytes to a file whole or not at all; durable: on disk before
    it appears; MODE sets its permissions."""
    temporary = path + ".tmp-{}".format(posix.getpid())
    try:
        with open(temporary, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                posix.fsync(f.fileno())
        if mode is not None:
            posix.chmod(temporary, mode)
        posix.replace(temporary, path)
    except BaseException:  # a full disk, Ctrl-C: no temporary file left behind
        try:
            posix.remove(temporary)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------------------------
# The cold path: everything below runs only when a build plan must be worked out, or for a
# subcommand. It imports what it needs where it needs it, so that the warm and the build path
# never pay for `os`, subprocess, shutil or TOML.


def launcher_command():
    """How the user runs appenv in this project, for messages: ./appenv, as docs/ say."""
    return "./appenv"


# --- What counts in a pyproject.toml ---------------------------------------------------------


def pyproject_digest(path, data=None):
    """A digest of what `uv sync --frozen` installs depends on in the pyproject.toml at PATH:
    every table but the [tool.X] of other tools (ruff, pytest, mypy ...), which change often
    and install nothing. The tools [build-system] names (the backend, setuptools-scm ...)
    keep their tables: building the project reads them; without [build-system], setuptools (what
    uv builds with then). None when it is not valid TOML."""
    import json

    try:
        data = read_toml(path, data)  # the bytes the fingerprint hashed, not what is there now
    except Problem:
        return None
    tool = data.get("tool")
    if isinstance(tool, dict):
        backend = json.dumps(data.get("build-system", "setuptools"), default=str).lower()
        backend = backend.replace("_", "-")
        kept = {k: v for k, v in tool.items() if k in ("uv", "appenv") or
                k.lower().replace("_", "-") in backend}
        data = dict(data, tool=kept) if kept else {k: v for k, v in data.items() if k != "tool"}
    return digest(json.dumps(data, sort_keys=True, default=str).encode())


# --- The interpreter that runs appenv ---------------------------------------------------------


def remember_interpreter(memo, key, executable=None):
    """Remember the Python that runs appenv for PATH KEY, for the lines at the top to find
    without a version manager's shim: MEMO holds PATH and interpreter line pairs, the newest
    first. The interpreter is sys.executable: what a shim execs, not the shim."""
    executable = executable or sys.executable
    if not executable or "\n" in key + executable:
        return
    try:
        with open(memo, "rb") as f:
            lines = os.fsdecode(f.read()).split("\n")
    except OSError:
        lines = []
    pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2) if lines[i] != key]
    text = "".join("{}\n{}\n".format(*pair) for pair in [(key, executable)] + pairs[:7])
    try:
        os.makedirs(os.path.dirname(memo), exist_ok=True)
        write_atomically(memo, os.fsencode(text), durable=False)
    except OSError:
        pass  # a read-only home: sh looks for python3 on every run


def newer_python(argv, installed):
    """Under Python 3.7 or older (python3 of RHEL 8 is 3.6): run this launcher again under the
    newest python3.X (3.8+) on PATH, and remember that one for the next runs."""
    found = "Python {}.{}.{} ({})".format(*sys.version_info[:3], sys.executable)
    if os.environ.get("APPENV_PYTHON"):
        raise Problem(69, "appenv needs Python 3.8 or newer, and APPENV_PYTHON={} is {}. Point "
                          "it at a newer Python, or unset it.".format(
                              os.environ["APPENV_PYTHON"], found))
    newest = None if installed else newest_python(os.environ.get("PATH", ""))
    if newest is None:
        raise Problem(69, "appenv needs Python 3.8 or newer; python3 is {}, and PATH has no "
                          "python3.8 or newer. Install one (on RHEL: dnf install python3.11), or "
                          "set APPENV_PYTHON to its path.".format(found))
    # for the next runs; also when the remembered one became this old (sh passed no memo)
    try:
        memo = STARTUP[0] if STARTUP and STARTUP[0] else os.path.join(cache_dir(), "python")
        remember_interpreter(memo, os.environ.get("PATH", ""), newest)
    except Problem:
        pass  # no home: looked for again next time
    os.execv(newest, [newest, "-I", "-S", argv[0]] + argv[1:])  # this file as a script, once


def newest_python(path):
    """The real interpreter (its sys.executable) of the python3.X on PATH with the highest X,
    8 or more, that starts: a version manager's shim of a version not selected does not. This
    runs under the old Python, so `output` (subprocess), not posix_spawn (3.8)."""
    for minor in range(40, 7, -1):
        for directory in path.split(os.pathsep):
            candidate = os.path.join(directory or ".", "python3.{}".format(minor))
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                out = output([candidate, "-I", "-S", "-c", "import sys; print(sys.executable)"])
                if out and out.strip():
                    return os.fsdecode(out.strip())
    return None


# --- The project and its files ---------------------------------------------------------------


class Project:
    """pyproject.toml and uv.lock at a root, read and checked on demand."""

    def __init__(self, root):
        self.root = root  # absolute
        self.pyproject_path = root.rstrip("/") + "/pyproject.toml"
        self.lock_path = root.rstrip("/") + "/uv.lock"

    def check(self, lock=True):
        """Fail with the error table's status when the files cannot be used."""
        self.check_present(lock)
        self.pyproject()
        if lock and self.lock_conflict() is not None:  # uv reports any other fault of uv.lock
            read_toml(self.lock_path)  # exit 65 with the recipe; see `diagnose` for the rest

    def check_present(self, lock=True):
        """Exit 66 when pyproject.toml, or uv.lock, is not there, or not a regular file."""
        for path in (self.pyproject_path, self.lock_path) if lock else (self.pyproject_path,):
            regular_file(path)
        if not os.path.isfile(self.pyproject_path):
            hint = "Run: {} init".format(launcher_command())
            if os.path.exists(os.path.join(self.root, "requirements.txt")):
                hint = "requirements.txt is here: run {} migrate".format(launcher_command())
            raise Problem(66, "No pyproject.toml found in {}. {}".format(self.root, hint))
        if lock and not os.path.isfile(self.lock_path):
            raise Problem(66, "No uv.lock found. Run: {} update-lockfile".format(
                launcher_command()))

    def member_patterns(self):
        """Where the workspace members and path dependencies are: ("member" | "exclude" |
        "path", text) from [tool.uv]. uv installs them too, so their pyproject.toml counts."""
        uv = table(self.pyproject(), "tool", "uv")
        workspace = table(uv, "workspace")
        patterns = [("member", p) for p in strings(workspace.get("members"))]
        patterns += [("exclude", p) for p in strings(workspace.get("exclude"))]
        for source in table(uv, "sources").values():
            for entry in source if isinstance(source, list) else [source]:
                if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                    patterns.append(("path", entry["path"]))
        return patterns

    def diagnose(self):
        """After uv failed: exit 65 with the file and line if uv.lock is not valid TOML."""
        if self.has_lock():
            self.lock()

    def has_lock(self):
        return is_file(self.lock_path)

    def lock_conflict(self):
        """uv.lock's bytes when they have git conflict markers, else None."""
        data = read_bytes(self.lock_path)
        return data if data is not None and our_side(data) is not None else None

    def take_our_side_of_lock(self, conflicted, committed=None):
        """Replace a conflicted uv.lock with our side, so that `uv lock` prefers its versions:
        COMMITTED (HEAD's lock, see `merge_base_lock`), else our side of each conflict. Returns
        its packages, for the summary; with no valid lock on our side, uv resolves afresh."""
        ours = committed if committed is not None else our_side(conflicted)
        try:
            packages = LockDiff.packages(toml_library().loads(ours.decode("utf-8")))
        except (ValueError, UnicodeDecodeError):
            say("uv.lock has merge conflict markers and our side is not a valid lock; "
                "locking afresh from pyproject.toml")
            os.remove(self.lock_path)
            return {}
        say("uv.lock has merge conflict markers; locking again from pyproject.toml, keeping "
            "the versions of our side (HEAD) where it allows")
        write_atomically(self.lock_path, ours)
        return packages

    def pyproject(self):
        return read_toml(self.pyproject_path)

    def lock(self):
        return read_toml(self.lock_path)

    def config(self):
        return Config(self.pyproject())


def read_toml(path, data=None):
    """Parse a TOML file (or DATA, read from it); a merge conflict or a syntax error is exit 65
    with the place."""
    if data is None:
        data = read_bytes(path)
        if data is None:
            raise Problem(66, "cannot read {}: it is not there".format(path))
    if our_side(data) is not None:
        raise Problem(65, (
            "{} has git merge conflict markers. Resolve the conflict in pyproject.toml first, "
            "then run {} update-lockfile to regenerate a clean uv.lock, then commit uv.lock."
        ).format(path, launcher_command()))
    toml = toml_library()
    try:
        return toml.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise Problem(65, "{} is not valid TOML: not UTF-8 ({})".format(path, e.reason))
    except toml.TOMLDecodeError as e:
        raise Problem(65, "{} is not valid TOML: {}".format(path, e))


def our_side(data):
    """A file with git conflict markers as it reads on our side (HEAD), None without markers:
    of each conflict, the lines from `<<<<<<<` to `|||||||` (diff3's base) or `=======`."""
    lines = data.splitlines(keepends=True)
    if not any(line.startswith(b"<<<<<<<") for line in lines):
        return None
    kept, side = [], None
    for line in lines:
        marker = line[:7]
        if marker == b"<<<<<<<":
            side = "ours"
        elif marker in (b"|||||||", b"=======") and side:
            side = "other"
        elif marker == b">>>>>>>" and side:
            side = None
        elif side != "other":
            kept.append(line)
    return None if side else b"".join(kept)


def table(data, *keys):
    """data[key][key]...: a TOML table, or {} where it is missing or not a table."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def strings(value):
    """The strings of a TOML array (anything else in it, or a non-array, is uv's to report)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class Config:
    """[tool.appenv]: what the production environment holds (docs/commands.md)."""

    FIELDS = {"extras": list, "groups": list, "packages": list, "all-packages": bool,
              "python": str, "keep": int}

    def __init__(self, pyproject):
        if not isinstance(table(pyproject, "tool").get("appenv", {}), dict):
            raise Problem(65, "pyproject.toml: [tool.appenv] must be a table")
        settings = table(pyproject, "tool", "appenv")
        for key, value in settings.items():
            kind = self.FIELDS.get(key)
            if kind is None:
                raise Problem(65, "pyproject.toml: [tool.appenv] has no setting {!r}; known: {}"
                              .format(key, ", ".join(self.FIELDS)))
            if (not isinstance(value, kind) or kind is int and isinstance(value, bool)
                    or kind is list and not all(isinstance(v, str) for v in value)):
                raise Problem(65, "pyproject.toml: [tool.appenv] {} must be {}".format(
                    key, {list: "a list of strings", bool: "true or false", str: "a string",
                          int: "a whole number"}[kind]))
        self.extras = settings.get("extras", [])
        self.groups = settings.get("groups", [])
        self.packages = settings.get("packages", [])
        self.all_packages = settings.get("all-packages", False)
        self.python = settings.get("python")
        self.keep = settings.get("keep", KEEP)
        if self.keep < 1:
            raise Problem(65, "pyproject.toml: [tool.appenv] keep must be at least 1")
        self.required_uv = table(pyproject, "tool", "uv").get("required-version")
        if not isinstance(self.required_uv, (str, type(None))):
            raise Problem(65, "pyproject.toml: [tool.uv] required-version must be a string")

    def sync_options(self, selection):
        """The `uv sync` options for this configuration: production, exact, frozen."""
        extras, groups = selection.resolve(self)
        options = ["--frozen", "--no-default-groups"]
        options += [x for e in extras for x in ("--extra", e)]
        options += [x for g in groups for x in ("--group", g)]
        if self.all_packages:
            options.append("--all-packages")
        options += [x for p in self.packages for x in ("--package", p)]
        if self.python:
            options += ["--python", self.python]
        return options


# --- Libraries: tomli and packaging, where appenv needs them --------------------------------


def libraries():
    """What appenv uses of packaging, from `library`: versions and specifiers (the lock summary,
    a uv to install), requirements and names (init, migrate). Symlinks, `prepare`, `run`, `uv`
    and `python` need none of it. An invalid requirement raises a ValueError."""
    library("packaging")
    from packaging import requirements, specifiers, utils, version
    libs = type(sys)("packaging, as appenv uses it")  # a namespace
    libs.Version, libs.InvalidVersion = version.Version, version.InvalidVersion
    libs.SpecifierSet, libs.InvalidSpecifier = specifiers.SpecifierSet, specifiers.InvalidSpecifier
    libs.Requirement, libs.canonicalize_name = requirements.Requirement, utils.canonicalize_name
    return libs


def toml_library():
    """tomllib (3.11+), else tomli: no packaging needed to read TOML."""
    try:
        import tomllib
    except ImportError:
        return library("tomli")
    return tomllib


PROJECT = None  # the project root of a subcommand; else the launcher's (`install_libraries`)
NO_INSTALL = []  # `status`: appenv's libraries are used where they are, never installed

# What appenv installs for itself, for this Python: tomllib is standard from 3.11 on.
WANTED = {"packaging": "packaging>=22"}
if sys.version_info < (3, 11):
    WANTED["tomli"] = "tomli>=1.1"


def library(name):
    """Import packaging or tomli from the first place that has it, recent enough: this
    interpreter's own site-packages, appenv's cache (<cache>/lib/pyX.Y), else installed there
    (`install_libraries`). Never into a user's environment."""
    if name in sys.modules:
        return sys.modules[name]
    tried = []
    import site
    module = import_from(name, site.getsitepackages(), "this Python's site-packages", tried)
    if module:
        return module
    # <cache>/appenv/lib/pyX.Y; without a cache (no home), enough if this Python has them
    target = os.path.join(cache_dir(), "lib", "py{}.{}".format(*sys.version_info))
    module = import_from(name, [target], "appenv's cache", tried)
    python = "Python {}.{} ({})".format(*sys.version_info[:2], sys.executable)
    if module is None and NO_INSTALL:
        raise NotAtHand(69, "{} is not at hand for {}, and status installs nothing: the first "
                            "command that needs it installs it".format(name, python))
    if module is None:
        install_libraries(name, target, tried)
        module = import_from(name, [target], "appenv's cache", [])
    if module is None:
        raise Problem(69, (
            "appenv needs {} for {} and found it nowhere. Tried:\n  {}\n"
            "To fix it for this Python, run:\n  {} -m pip install --target {} '{}'\n"
            "For a project whose only index is a folder of wheels (air-gapped), put the wheels "
            "of {} in that folder too."
        ).format(name, python, "\n  ".join(tried), sys.executable, target, WANTED[name], name))
    return module


class NotAtHand(Problem):
    """A library appenv needs is not where it looks, and is not to be installed now."""


def import_from(name, directories, where, tried):
    """Module NAME from DIRECTORIES, when it is there and recent enough; else None, and
    DIRECTORIES leave sys.path again."""
    added = [d for d in directories if os.path.isdir(d) and d not in sys.path]
    if where == "appenv's cache":
        sys.path[:0] = added  # before site-packages, when this Python was started with them
    else:
        sys.path.extend(added)  # after the standard library
    import importlib
    try:
        module = importlib.import_module(name)
        if recent(module):
            return module
        reason = "{} {} is older than {}".format(name, getattr(module, "__version__", "?"),
                                                 WANTED[name])
    except ImportError:
        reason = "no {}".format(name)
    except Exception as e:  # a broken copy
        reason = "{} does not import: {}".format(name, e)
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]
    for directory in added:
        sys.path.remove(directory)
    tried.append("{} ({}): {}".format(where, ", ".join(directories) or "none", reason))
    return None


def recent(module):
    """packaging 22 or newer (it compares its own version); a tomli with loads()."""
    if module.__name__ == "tomli":
        return hasattr(module, "loads") and hasattr(module, "TOMLDecodeError")
    from packaging.version import Version
    return Version(module.__version__) >= Version(WANTED["packaging"].partition(">=")[2])


def install_libraries(name, target, tried):
    """Install library NAME into TARGET, from the first source that has it: uv's cache
    without the network; the indexes of the user's uv, then pip, configuration (run outside
    the project, so that its settings do not apply); last the project's own indexes.
    UV_OFFLINE and PIP_NO_INDEX hold for each. Only NAME: a symlink that needs tomli works
    where packaging cannot be had."""
    requirements = [WANTED[name]]
    offline = truthy(os.environ.get("UV_OFFLINE"))
    no_index = ["--no-index"] if truthy(os.environ.get("PIP_NO_INDEX")) else []
    staging = target + ".tmp-{}".format(os.getpid())
    outside = "/"  # uv reads pyproject.toml and uv.toml from the directory up: none here
    attempts = []
    uv = Uv.at_hand()
    if uv is None and not offline:  # uv first, so that the libraries come into uv's cache too
        installed = Uv.install(None, tried)  # a failure is listed with the sources
        uv = installed and installed.path
    say("installing {} for appenv into {}".format(requirements[0], target))
    if uv:
        command = [uv, "pip", "install", "--quiet", "--python", sys.executable, "--target",
                   staging] + no_index + requirements
        attempts.append(("uv's cache, offline", command + ["--offline"], outside))
        if not offline:
            attempts.append(("the indexes of your uv configuration", command, outside))
    pip = pip_install(staging, requirements) + (["--no-index"] if offline else [])
    attempts.append(("the indexes of your pip configuration" + (
        " (UV_OFFLINE is set: pip looked in no index)" if offline else ""), pip, outside))
    project = PROJECT or launcher_root()
    unread = None  # the project's indexes, when there is no uv to read them with
    if os.path.isfile(os.path.join(project, "pyproject.toml")):
        where = "the project's indexes ({})".format(os.path.join(project, "pyproject.toml"))
        if uv:
            attempts.append((where, command, project))
        else:
            unread = where + ": not tried: appenv reads them with uv, and has none (put uv " \
                "on PATH, or set APPENV_UV)"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    except OSError as e:
        raise Problem(73, "cannot write {}: {}".format(os.path.dirname(target), e.strerror))
    for where, command, cwd in attempts:
        remove_tree(staging)
        failure = quiet_run(command, cwd)
        if failure is None and os.path.isdir(staging):
            merge_into(staging, target)
            return
        tried.append("{}: {}".format(where, failure or "installed nothing"))
    tried.extend([unread] if unread else [])
    remove_tree(staging)


def merge_into(staging, target):
    """Move what was installed into STAGING to TARGET, entry by entry (each in one rename):
    TARGET may hold the other library already, or get the same from another appenv."""
    try:
        os.rename(staging, target)
    except OSError:  # TARGET is there
        for entry in os.listdir(staging):
            try:
                os.rename(os.path.join(staging, entry), os.path.join(target, entry))
            except OSError:  # there already
                pass
        remove_tree(staging)


def pip_install(target, requirements):
    return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
            "--no-warn-script-location", "--quiet", "--target", target] + requirements


def quiet_run(command, cwd=None):
    """Run a helper of appenv's own with nothing on the terminal; None when it succeeded, else
    why not, with the last line of what it said. pip's notices (running as root, a newer pip)
    are switched off; what the user configured for uv and pip holds."""
    environ = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = captured(command, cwd=cwd, env=environ)
    if done.returncode == 0:
        return None
    said = [line for line in done.stderr.splitlines() if line.strip()]
    return "exit status {}{}".format(done.returncode, ": " + said[-1].strip() if said else "")


def remember_bytecode(path, source, code):
    """Cache this file's CODE after its SOURCE, which the lines at the top compare."""
    import marshal
    if path is None:  # no home directory to cache in
        return
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        if os.access(directory, os.W_OK):  # a read-only home: compiled on every run
            # not durable: what a power loss leaves is compared, or fails to load, and replaced
            write_atomically(path, source + marshal.dumps(code), durable=False)
            prune(directory, 20)  # launchers of other versions, other Pythons
    except OSError:
        pass


def captured(command, input=None, cwd=None, env=None, text=True):
    """Run COMMAND for what it says, given INPUT (else no stdin): its status, stdout and
    stderr (as text, unless not TEXT); status 69 when it cannot be started at all. The one way
    appenv runs a helper whose output it reads. It runs under Python 3.6 too (newest_python),
    which has neither capture_output nor text."""
    import subprocess
    announce(command)
    try:
        return subprocess.run(command, input=input, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=text,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except OSError as e:
        said = "cannot run {}: {}".format(command[0], e.strerror)
        return subprocess.CompletedProcess(command, 69, "", said if text else fsencode(said))


def output(command):
    """A command's stdout as bytes, or None when it cannot run or fails."""
    done = captured(command, text=False)
    return done.stdout if done.returncode == 0 else None


# --- uv --------------------------------------------------------------------------------------


class Uv(UvBinary):
    """The uv binary appenv drives: found, or installed into appenv's cache with pip. What was
    found is remembered there, for each [tool.uv] required-version, and used again while
    `uv_situation` holds: no `uv --version` on every command."""

    @classmethod
    def find(cls, root, required, install=True, recall=True):
        """APPENV_UV; uv on PATH; the copy appenv installed before; else install one."""
        memo = cls.memo(required)
        found = UvBinary.recall(Record.read("uv", memo)) if recall else None
        if found is None:
            found = cls.search(root, required, install)
            if found is not None:
                try:
                    os.makedirs(os.path.dirname(memo), exist_ok=True)
                    Record("uv", found.record()).write(memo)
                except (OSError, ValueError):
                    pass  # a cache: found again next time
        return found

    @staticmethod
    def memo(required):
        return os.path.join(cache_dir(), "uv-found", digest(
            "{}\0{}\0{}".format(FORMAT, MIN_UV, required or "").encode())[:16])

    @classmethod
    def at_hand(cls):
        """Any uv that can be started, of whatever version, found without running one: enough
        to install libraries with."""
        remembered = UvBinary.recall(Record.read("uv", cls.memo(None)))
        if remembered:
            return remembered.path
        candidates = [os.environ.get("APPENV_UV"), which("uv")] + cls.cached()
        return next((c for c in candidates if c and os.access(c, os.X_OK)), None)

    @staticmethod
    def cached():
        import glob  # "*" leaves out names starting with ".": an install under way
        pattern = os.path.join(glob.escape(os.path.join(cache_dir(), "uv")), "*", "bin", "uv")
        return [p for p in glob.glob(pattern) if os.access(p, os.X_OK)]

    @classmethod
    def search(cls, root, required, install):
        wanted = ">=" + MIN_UV + (", and [tool.uv] required-version " + required
                                  if required else "")
        explicit = os.environ.get("APPENV_UV")
        if explicit:
            path = which(explicit) or explicit
            version = cls.version_of(path)
            if version is None:
                raise Problem(69, "APPENV_UV={} is not a uv that runs. Unset it, or point it at "
                                  "a uv binary.".format(explicit))
            return cls(path, version, "APPENV_UV")
        on_path = which("uv")
        tried = [] if on_path else ["uv on PATH: not found"]
        found = on_path and cls.usable(on_path, "PATH", tried, root, required)
        if found:
            return found
        versions = [(cls.version_of(p), p) for p in cls.cached()]
        for version, path in sorted(versions, key=lambda vp: release(vp[0]), reverse=True):
            found = cls.usable(path, "appenv's cache", tried, root, required, version)
            if found:
                return found
        if not install:
            return None
        installed = cls.install(required, tried)
        if installed:
            return installed
        raise Problem(69, (
            "no usable uv ({} wanted). Tried:\n  {}\n"
            "Install uv (https://docs.astral.sh/uv/getting-started/installation/, or "
            "`python3 -m pip install uv`) and put it on PATH, or set APPENV_UV to its path."
        ).format(wanted, "\n  ".join(tried)))

    @classmethod
    def usable(cls, path, how, tried, root, required, version=None):
        version = version or cls.version_of(path)
        if version is None:
            tried.append("{} ({}): does not run".format(path, how))
        elif release(version) < release(MIN_UV):
            tried.append("{} ({}): version {} is older than {}".format(path, how, version, MIN_UV))
        elif required and quiet_run([path, "--project", root, "cache", "dir"]) is not None:
            # uv itself reads required-version (pyproject.toml, uv.toml) and refuses to run
            tried.append("{} ({}): version {} is not [tool.uv] required-version {}".format(
                path, how, version, required))
        else:
            return cls(path, version, how)
        return None

    @staticmethod
    def version_of(path):
        out = output([path, "--version"])  # "uv 0.13.9 (abc123 2026-01-01)"
        try:
            version = out.decode().split()[1]
        except (AttributeError, IndexError, UnicodeDecodeError):
            return None
        return version if release(version) else None

    @classmethod
    def install(cls, required, tried):
        """pip install uv into <cache>/appenv/uv/<version>, honouring pip's configuration."""
        wanted = ">=" + MIN_UV
        if required:  # a specifier for pip: the only place that needs packaging for uv
            libs = libraries()
            wanted = libs.SpecifierSet(wanted)
            try:
                wanted &= libs.SpecifierSet(required)
            except libs.InvalidSpecifier:
                try:
                    wanted &= libs.SpecifierSet("==" + required)
                except libs.InvalidSpecifier:
                    raise Problem(65, "pyproject.toml: [tool.uv] required-version {!r} is not a "
                                      "version specifier".format(required))
        base = os.path.join(cache_dir(), "uv")
        staging = os.path.join(base, ".install-{}".format(os.getpid()))
        requirement = "uv" + str(wanted)
        say("installing {} into {} with pip".format(requirement, base))
        offline = ["--no-index"] if truthy(os.environ.get("UV_OFFLINE")) else []
        command = pip_install(staging, [requirement]) + offline
        try:
            os.makedirs(base, exist_ok=True)
            failure = quiet_run(command, cwd=base)
        except OSError as e:
            failure = e.strerror
        try:
            version = None if failure else cls.version_of(os.path.join(staging, "bin", "uv"))
            if version is None:
                tried.append("pip install {} with {}{}: {}".format(
                    requirement, sys.executable, " (UV_OFFLINE is set: pip looked in no "
                    "index)" if offline else "", failure or "no uv binary came of it"))
                return None
            final = os.path.join(base, version)
            try:
                os.rename(staging, final)
            except OSError:  # another appenv installed the same version meanwhile
                pass
            return cls(os.path.join(final, "bin", "uv"), version, "installed by appenv")
        finally:
            remove_tree(staging)


def release(version):
    """uv's version as numbers to compare, (0, 13, 9); () when it is not one. uv's releases
    are X.Y.Z (a local build adds +N), so this needs no packaging: the symlinks never do."""
    try:
        return tuple(int(part) for part in (version or "").partition("+")[0].split("."))
    except ValueError:
        return ()


# --- What an environment provides ------------------------------------------------------------


def no_such_binary(env, name):
    offered = offered_binaries(env)
    direct = [b["name"] for b in offered if b["direct"]] or [b["name"] for b in offered]
    more = len(offered) - len(direct)
    return (
        "{!r} is not a binary of this project's environment.\n"
        "  The environment provides: {}{}\n"
        "  To add it, run {} add PACKAGE (or add it to [project] dependencies and run {} "
        "update-lockfile); or remove the link.{}"
    ).format(name, ", ".join(direct) or "none",
             " (and {} more: {} list)".format(more, launcher_command()) if more else "",
             launcher_command(), launcher_command(),
             did_you_mean(name, [b["name"] for b in offered]))


def offered_binaries(env):
    """The binaries ENV's packages install in bin/ (console scripts, and programs shipped as
    files, as ruff's: RECORD lists both), each with its package and whether that is a direct
    dependency of the project: those first, then by name."""
    import importlib.metadata
    try:
        site = site_packages(env.path)
    except (OSError, Problem):
        return []
    try:
        canonical = libraries().canonicalize_name
    except Problem:  # packaging cannot be had: none is told a direct dependency
        canonical = str
    direct = direct_dependencies(env.home.root)
    found, bindir = [], os.path.join(env.path, "bin")
    for dist in importlib.metadata.distributions(path=[site]):
        package = canonical(dist.metadata["Name"] or "")
        names = {e.name for e in dist.entry_points if e.group == "console_scripts"}
        try:
            files = dist.files or ()
        except Exception:  # a damaged RECORD: its console scripts still count
            files = ()
        for file in files:  # bin/X is ../../../bin/X from site-packages
            path = os.path.normpath(os.path.join(site, str(file)))
            if os.path.dirname(path) == bindir and is_program(path):
                names.add(os.path.basename(path))
        found += [{"name": name, "package": package, "version": dist.version,
                   "direct": package in direct}
                  for name in sorted(names) if os.path.exists(os.path.join(bindir, name))]
    return sorted(found, key=lambda b: (not b["direct"], b["name"]))


def is_program(path):
    """Whether PATH is a program this system runs: a script (#!) or an ELF binary, not a
    shell completion or a Windows .cmd that a wheel also puts in bin/."""
    try:
        with open(path, "rb") as f:
            start = f.read(4)
    except OSError:
        return False
    return start[:2] == b"#!" or start == b"\x7fELF"


def direct_dependencies(root):
    """The names of [project] dependencies, of its extras and of the dependency groups, as
    packaging writes them; none when pyproject.toml cannot be read."""
    try:
        data = Project(root).pyproject()
        texts = strings(table(data, "project").get("dependencies"))
        for group in list(table(data, "project", "optional-dependencies").values()) + list(
                table(data, "dependency-groups").values()):
            texts += strings(group)
        libs = libraries()
        return {libs.canonicalize_name(libs.Requirement(t).name) for t in texts}
    except (Problem, ValueError):
        return set()


# --- Lock differences ------------------------------------------------------------------------


class LockDiff:
    """What changed between two uv.lock files, package by package."""

    def __init__(self, before, after, created=False):
        self.before, self.after = before, after
        self.created = created  # no uv.lock before

    @classmethod
    def since(cls, project, before, merged):
        """The summary of uv.lock now against BEFORE (its bytes then, or our side's packages
        in a conflict); during a merge, against MERGED, what our side (HEAD) committed."""
        after, created = read_bytes(project.lock_path), False
        if merged is not None:
            before = cls.packages(read_toml(project.lock_path, merged))
        elif not isinstance(before, dict):
            if after == before:
                return "uv.lock: no package changed"  # nothing parsed
            created, before = before is None, (
                cls.packages(read_toml(project.lock_path, before)) if before else {})
        return cls(before, cls.packages(read_toml(project.lock_path, after)), created).report()

    @staticmethod
    def packages(lock):
        found = {}
        packages = lock.get("package", [])
        for package in packages if isinstance(packages, list) else []:
            if not isinstance(package, dict):
                continue
            name, version = package.get("name"), package.get("version")
            source = table(package, "source")
            if "virtual" in source or "editable" in source:
                continue  # the project and its workspace members: not pinned by the lock
            if isinstance(name, str) and isinstance(version, (str, type(None))):
                found.setdefault(name, set()).add(version or "(no version)")
        return found

    def changes(self, Version=None):
        """(kind, name, old, new) for each package that was added, removed or changed; told
        apart as upgrades and downgrades with packaging's VERSION, else only "changed"."""
        result = []
        for name in sorted(set(self.before) | set(self.after)):
            old, new = self.before.get(name), self.after.get(name)
            if old == new:
                continue
            kind = "added" if old is None else "removed" if new is None else "changed"
            if kind == "changed":
                try:
                    lowest_old, lowest_new = (min(map(Version, v)) for v in (old, new))
                    if lowest_new != lowest_old:
                        kind = "upgraded" if lowest_new > lowest_old else "downgraded"
                except (ValueError, TypeError):
                    pass
            result.append((kind, name, old and versions_text(old, Version),
                           new and versions_text(new, Version)))
        return result

    def report(self):
        changes = self.changes(comparable_versions()) if self.before != self.after else []
        if not changes and self.created:
            return ("uv.lock: written; it pins no package but the project's own (workspace "
                    "members, path dependencies)")
        if not changes:
            return "uv.lock: no package changed"
        kinds = [kind for kind, *_ in changes]
        order = ["added", "removed", "upgraded", "downgraded", "changed"]
        lines = ["uv.lock: " + ", ".join("{} {}".format(kinds.count(k), k) for k in order
                                         if k in kinds)]
        for kind, name, old, new in sorted(changes, key=lambda c: (order.index(c[0]), c[1])):
            if old and new:
                lines.append("  {:<10} {} {} -> {}".format(kind, name, old, new))
            else:
                lines.append("  {:<10} {} {}".format(kind, name, old or new))
        return "\n".join(lines)


def relock(uv, args, changes_too=False):
    """Run uv ARGS (a lock: `uv lock`, `uv add`, `uv remove`), passing what it says on to
    stderr line by line, but the lines appenv says itself: each package added, removed or
    updated (the summary says each once, against the lock before the command; CHANGES_TOO
    keeps them) and uv's hint to run `uv lock`, held back. Returns (status, held lines)."""
    command = uv.command(*args)
    if sys.stderr.isatty() and not getenv("NO_COLOR"):
        command[1:1] = ["--color", "always"]  # as uv colours its words on a terminal
    announce(command)
    read, write = posix.pipe()
    try:
        pid = spawn(command, [(posix.POSIX_SPAWN_DUP2, write, 1),
                              (posix.POSIX_SPAWN_DUP2, write, 2)])
    except OSError as e:
        raise UvCannotStart(69, "cannot run uv {}: {}".format(uv.path, e.strerror))
    finally:
        posix.close(write)
    held, holding = [], False
    try:
        with open(read, "rb") as said:
            for line in said:
                text = without_colour(line.decode("utf-8", "replace"))
                words = text.split()
                holding = (words[:2] in (["error:", "The"], ["hint:", "To"]) and
                           "lockfile" in text) or (holding and not words)
                if holding:
                    held.append(line)
                elif words[:2] == ["hint:", "If"] and "`--frozen`" in text:
                    continue  # `uv add --frozen`, to add without locking: not appenv's way
                elif changes_too or not (words[:1] in (["Added"], ["Removed"], ["Updated"])
                                         and len(words) in (3, 5)):
                    posix.write(2, line)
    except BaseException:
        stop(pid)
        raise
    return wait(pid), held


def without_colour(text):
    """TEXT without the terminal's colour codes (ESC [ ... m)."""
    while "\x1b[" in text:
        start = text.index("\x1b[")
        end = text.find("m", start)
        if end < 0:
            break
        text = text[:start] + text[end + 1:]
    return text


def hold_project(root):
    """Lock the project directory until this process ends, for a command that changes
    pyproject.toml and uv.lock: two at once take turns, rather than the last one's uv writing
    over what the other added (both would say they succeeded)."""
    fd = posix.open(root, posix.O_RDONLY)  # not inherited by uv: it closes on exec
    lock_exclusively(fd, "waiting for another appenv that is changing uv.lock in {}".format(root))


def merge_base_lock(root):
    """uv.lock's bytes as our side (HEAD) committed them, while git merges into the checkout
    of ROOT: the lock before the merge, for the summary and to lock from. None otherwise."""
    directory = root.rstrip("/")  # absolute; posix, not os, as update-lockfile is timed
    while not exists(directory + "/.git"):
        if not directory:
            return None
        directory = directory.rpartition("/")[0]
    git = directory + "/.git"
    if is_file(git):  # a worktree: "gitdir: PATH"
        text = (read_bytes(git) or b"").decode("utf-8", "replace").strip()
        git = text.partition("gitdir:")[2].strip()
        git = git if git.startswith("/") else directory + "/" + git
    if not exists(git + "/MERGE_HEAD"):
        return None
    return output(["git", "-C", root, "show", "HEAD:./uv.lock"]) or None


def plural(count, word):
    return "{} {}{}".format(count, word, "" if count == 1 else "s")


def versions_text(versions, Version):
    try:
        return ", ".join(sorted(versions, key=Version))
    except (ValueError, TypeError):
        return ", ".join(sorted(versions))


def comparable_versions():
    """packaging's Version; None, with a word why, when packaging cannot be had: uv.lock is
    written by then, and the summary says "changed" for what it cannot call an upgrade."""
    try:
        return libraries().Version
    except Problem as missing:
        if missing.status not in (69, 73):  # not to be had, or no cache to put it in
            raise
        say("packaging cannot be had, so the summary does not tell upgrades from downgrades:\n  "
            + missing.message.replace("\n", "\n  "))
        return None


# --- New projects: init and migrate ----------------------------------------------------------


class NewProject:
    """The files init and migrate write into ROOT: pyproject.toml (a [project] table, added to a
    pyproject.toml that has none), this launcher as `appenv`, a link NAME -> appenv per binary,
    .gitignore entries, and uv.lock. Every check runs before anything is written, and when a step
    fails (uv lock, a write) every file is put back as it was."""

    VERSION = "0.1.0"
    IGNORED = (".appenv/", ".venv/")  # appenv's environments, uv's development environment

    def __init__(self, root, command):
        self.root, self.command = root, command
        self.pyproject_path = os.path.join(root, "pyproject.toml")
        self.launcher_path = os.path.join(root, "appenv")
        self.name = self.description = self.python = None
        self.requires_python = None  # default: >=X.Y of the Python uv finds here
        self.dependencies, self.binaries, self.indexes = [], [], []
        self.replace_launcher = False  # migrate: the classic appenv gives way
        self._existing = self._uv = None

    def existing(self):
        """pyproject.toml's text and its tables, if it exists; one with [project] is refused."""
        if self._existing is None:
            text, table = None, {}
            if os.path.lexists(self.pyproject_path):
                table = read_toml(self.pyproject_path)
                text = read_bytes(self.pyproject_path).decode("utf-8")
                if "project" in table:
                    raise Problem(65, (
                        "{} already has a [project] table, so this is a project already; nothing "
                        "was changed. Add dependencies with `{} add NAME`, and lock with `{} "
                        "update-lockfile`."
                    ).format(self.pyproject_path, launcher_command(), launcher_command()))
            self._existing = (text, table)
        return self._existing

    def uv(self):
        if self._uv is None:
            self._uv = Uv.find(self.root, Config(self.existing()[1]).required_uv)
        return self._uv

    def check(self):
        """What can be refused before any question is asked."""
        self.existing()
        self.launcher()

    def launcher(self):
        """This launcher's bytes when `appenv` is to be written; None when it is there already."""
        source = launcher_file()
        data = read_bytes(source)
        if not os.path.lexists(self.launcher_path):
            return data
        if (os.path.realpath(self.launcher_path) == source
                or read_bytes(self.launcher_path) == data):  # this launcher: linked, or a copy
            return None
        if self.replace_launcher:
            return data
        hint = "Move it away and run init again"
        if os.path.exists(os.path.join(self.root, "requirements.txt")):
            hint = "requirements.txt is here, so it may be the classic appenv: run migrate"
        raise Problem(65, "{} exists and is not this launcher; nothing was changed. {}.".format(
            self.launcher_path, hint))

    def links(self):
        """The links to make: each binary whose name is not a link to appenv yet."""
        paths = []
        for name in self.binaries:
            path = os.path.join(self.root, name)
            if os.path.islink(path) and os.readlink(path) in ("appenv", self.launcher_path):
                continue
            if os.path.lexists(path):
                raise Problem(65, "{} exists and is not a link to appenv; nothing was changed. "
                                  "Remove it, or leave out --binary {}.".format(path, name))
            paths.append(path)
        return paths

    def gitignore(self):
        """.gitignore with the missing entries appended; None when none is missing."""
        data = read_bytes(os.path.join(self.root, ".gitignore")) or b""
        text = data.decode("utf-8", "surrogateescape")
        present = {line.strip().strip("/") for line in text.splitlines()}
        missing = [entry for entry in self.IGNORED if entry.strip("/") not in present]
        if not missing:
            return None
        if text and not text.endswith("\n"):
            text += "\n"
        text += "".join(entry + "\n" for entry in missing)
        return text.encode("utf-8", "surrogateescape")

    def pyproject_text(self, uv):
        """pyproject.toml before its dependencies: what the file had, then the [project] table
        `uv init --bare` writes, and what uv has no command for: the description (uv 0.13
        leaves its quotes unescaped), [tool.appenv] and the [[tool.uv.index]] of migrate."""
        import tempfile

        directory = tempfile.mkdtemp(prefix="appenv-init-")
        try:
            uv.run(["init", "--bare", "--no-workspace", "--vcs", "none", "--author-from", "none",
                    "--quiet", "--name", self.name, "--python", self.requires_python, directory],
                   step="writing the [project] table (uv init)")
            lines = [read_bytes(os.path.join(directory, "pyproject.toml")).decode().rstrip()]
        finally:
            remove_tree(directory)
        if self.description:
            lines.append("description = " + toml_string(self.description))
        if self.python:
            lines += ["", "[tool.appenv]", "python = " + toml_string(self.python)]
        for index in self.indexes:
            lines += [""] + index.toml()
        text = "\n".join(lines) + "\n"
        before = self.existing()[0]
        if before and before.strip():
            text = before + ("" if before.endswith("\n") else "\n") + "\n" + text
        toml = toml_library()
        try:
            toml.loads(text)
        except toml.TOMLDecodeError as e:
            raise Problem(65, (
                "cannot add [project] and its settings to {}: {}. It defines some of the tables "
                "appenv writes ([tool.appenv], [[tool.uv.index]]) already; move them out, run {} "
                "again, then merge them back. Nothing was changed."
            ).format(self.pyproject_path, e, self.command))
        return text

    def create(self, pins=(), environ=None, hint=""):
        """Write the files, then add the dependencies and lock with `uv add`; put every file
        back when a step fails."""
        uv = self.uv()
        if self.requires_python is None:
            self.requires_python = ">=" + default_python(uv, self.root)
        launcher, links, ignore = self.launcher(), self.links(), self.gitignore()
        journal = Journal()
        try:
            text = self.pyproject_text(uv)
            journal.makedirs(self.root)
            journal.write(self.pyproject_path, text)
            if launcher is not None:
                journal.write(self.launcher_path, launcher, 0o755)
            for path in links:
                journal.symlink("appenv", path)
            if ignore is not None:
                journal.write(os.path.join(self.root, ".gitignore"), ignore)
            journal.save(os.path.join(self.root, "uv.lock"))
            self.lock(uv, environ, pins)
        except OSError as e:
            journal.restore()
            raise Problem(73, "cannot write {}: {}. Nothing was changed.".format(
                e.filename or self.root, e.strerror))
        except Problem as problem:
            journal.restore()
            if problem.status == 65 and "Nothing was changed" in problem.message:
                raise
            raise Problem(problem.status, (
                "{}\nNothing was changed: pyproject.toml, appenv, the links and .gitignore are as "
                "they were. Fix what uv reported above, then run {} again.{}"
            ).format(problem.message, self.command, hint))
        except BaseException:
            journal.restore()
            raise

    def lock(self, uv, environ, pins):
        """`uv add` the dependencies as given (--raw: no bounds added), which locks; PINS (of
        migrate) constrain that first lock only, so that uv.lock keeps their versions while
        pyproject.toml does not name them."""
        env = dict(os.environ)
        for key, value in (environ or {}).items():
            env.setdefault(key, value)  # the caller's own settings win
        if not self.dependencies:
            uv.run(["lock", "--project", self.root], env=env, step="creating uv.lock")
            return
        import tempfile

        with tempfile.TemporaryDirectory(prefix="appenv-pins-") as directory:
            command = ["add", "--raw", "--no-sync", "--project", self.root] + self.dependencies
            if pins:
                constraints = os.path.join(directory, "requirements.lock")
                write_atomically(constraints, "".join(pin + "\n" for pin in pins))
                command += ["--constraints", constraints]
            uv.run(command, env=env, step="locking with the versions pinned in requirements.lock"
                   if pins else "creating uv.lock")

    def written(self):
        """The files a user commits, relative to the project root."""
        return ["pyproject.toml", "uv.lock", "appenv", ".gitignore"] + list(self.binaries)

    def where(self, name):
        """How to reach ROOT/NAME from the working directory, for messages."""
        path = os.path.relpath(os.path.join(self.root, name))
        return path if path.startswith(("/", "../")) else "./" + path


class Journal:
    """What init and migrate changed, as it was before: restore() puts it back."""

    def __init__(self):
        self.saved = {}  # path -> ("file", bytes, mode) | ("link", target) | ("absent",)
        self.created = None  # the outermost directory made

    def save(self, path):
        if path in self.saved:
            return
        if os.path.islink(path):
            self.saved[path] = ("link", os.readlink(path))
        elif os.path.lexists(path):
            self.saved[path] = ("file", read_bytes(path), os.stat(path).st_mode & 0o7777)
        else:
            self.saved[path] = ("absent",)

    def makedirs(self, path):
        top = path
        while not os.path.exists(os.path.dirname(top)):
            top = os.path.dirname(top)
        if not os.path.exists(path):
            os.makedirs(path)
            self.created = top

    def write(self, path, data, mode=None):
        self.save(path)
        write_atomically(path, data, mode=mode)

    def symlink(self, target, path):
        self.save(path)
        os.symlink(target, path)

    def restore(self):
        for path, before in reversed(list(self.saved.items())):
            try:
                if os.path.lexists(path):
                    os.remove(path)
                if before[0] == "file":
                    write_atomically(path, before[1], mode=before[2])
                elif before[0] == "link":
                    os.symlink(before[1], path)
            except OSError as e:
                say("could not put back {}: {}".format(path, e.strerror), error=True)
        if self.created:
            remove_tree(self.created)


def read_bytes(path):
    """A file's bytes, None when it does not exist; exit 66 when it cannot be read or is not a
    regular file (a FIFO would block, a device never end)."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Problem(66, "cannot read {}: {}".format(path, e.strerror))
    st = posix.fstat(fd)
    if st.st_mode & 0o170000 != 0o100000:  # before open(): it refuses a directory
        posix.close(fd)
        regular_file(path, st)
    with open(fd, "rb") as f:
        try:
            return f.read()
        except OSError as e:
            raise Problem(66, "cannot read {}: {}".format(path, e.strerror))


FILE_KINDS = {stat_kind: name for stat_kind, name in (
    (0o010000, "a FIFO (named pipe)"), (0o020000, "a character device"),
    (0o060000, "a block device"), (0o140000, "a socket"), (0o040000, "a directory"))}


def regular_file(path, st=None):
    """Exit 66 when PATH, its links followed, is there but not a regular file."""
    try:
        st = st or posix.stat(path)
    except OSError:
        return  # not there: for the caller to say
    kind = st.st_mode & 0o170000
    if kind != 0o100000:
        raise Problem(66, "{} is {}, not a regular file: appenv reads only regular files. "
                          "Replace it with the file itself.".format(
                              path, FILE_KINDS.get(kind, "an unknown kind of file")))


def default_python(uv, root):
    """X.Y of the Python uv would use here, so that the first lock works offline from the cache:
    `uv python find` (with UV_PYTHON as the request when it is set); else this interpreter's."""
    command = uv.command("python", "find", "--no-project", "--show-version")
    if os.path.isdir(root):  # its .python-version counts
        command += ["--directory", root]
    if os.environ.get("UV_PYTHON"):
        command.append(os.environ["UV_PYTHON"])
    try:
        release = libraries().Version(output(command).decode().strip()).release
        if len(release) >= 2:
            return "{}.{}".format(*release[:2])
    except (AttributeError, ValueError):
        pass
    return "{}.{}".format(*sys.version_info[:2])


TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
                "\r": "\\r"}


def toml_string(text):
    """TEXT as a TOML basic string: quote, backslash and control characters escaped."""
    out = []
    for char in text:
        if char in TOML_ESCAPES:
            out.append(TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append("\\u{:04X}".format(ord(char)))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


# What init takes from options or answers: each checked, or exit 64 saying what is wrong.


def project_name(text):
    """A valid project name (PEP 508), as given."""
    text = text.strip()
    try:
        requirement = libraries().Requirement(text)
    except ValueError:
        requirement = None
    if not requirement or requirement.name != text or str(requirement) != text:
        raise Problem(64, "{!r} is not a valid project name: letters, digits and - _ . only, "
                          "starting and ending with a letter or digit".format(text))
    return text


def requirement_text(text):
    """A dependency: a requirement as packaging reads it (PEP 508), in its normal form."""
    try:
        requirement = libraries().Requirement(text.strip())
        if any(not s.version for s in requirement.specifier):  # packaging takes `===` alone
            raise ValueError("{} needs a version".format(requirement.specifier))
    except ValueError as e:
        raise Problem(64, "{!r} is not a requirement: {}".format(redact(text), redact(str(e))))
    return str(requirement)


def binary_name(text):
    """The name of a link to make: one file name, not one of the project's own files."""
    text = plain_text(text.strip(), "a binary name")
    reserved = LAUNCHER_NAMES + ("pyproject.toml", "uv.lock", ".gitignore", ".appenv", ".venv")
    if not text or "/" in text or text in (".", "..") or text in reserved or "\0" in text:
        raise Problem(64, "{!r} cannot be a binary's link: give the name of a console script, "
                          "like http".format(text))
    return text


def binary_names(text):
    """Several binary names, separated by spaces or commas; `-` for none."""
    if text.strip() == "-":
        return []
    names = [binary_name(n) for n in text.replace(",", " ").split()]
    return sorted(set(names), key=names.index)


def python_setting(text):
    """--python: (requires-python, [tool.appenv] python). A version (3.12) is both
    `>=3.12` and `3.12`; a specifier (>=3.10,<3.13) is requires-python alone."""
    libs = libraries()
    text = text.strip()
    try:
        version = libs.Version(text)
    except libs.InvalidVersion:
        version = None
    if version is not None and 2 <= len(version.release) <= 3 and not (
            version.epoch or version.local or version.is_postrelease or version.is_devrelease):
        return ">={}.{}".format(*version.release[:2]), str(version)
    try:
        specifier = libs.SpecifierSet(text)
    except libs.InvalidSpecifier:
        specifier = None
    if version is None and specifier:
        return str(specifier), None
    raise Problem(64, "{!r} is not a Python version (3.12) or version specifier "
                      "(>=3.10,<3.13)".format(text))


def plain_text(text, what):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(64, "{} is not valid UTF-8 text".format(what))
    return text


def default_name(root):
    """A project name made of the directory's name: `My Tools` is my-tools."""
    base = os.path.basename(os.path.abspath(root))
    name = "".join(c.lower() if c.isascii() and c.isalnum() else "-" for c in base)
    return "-".join(part for part in name.split("-") if part) or "app"


def redact(text):
    """TEXT with the user:password@ of every URL in it left out, for messages."""
    import re
    # the authority ends at the first / ? # space or quote; its last @ ends the credentials
    return re.sub("://[^/?# \t\n\"']*@", "://", text)


INIT_EXAMPLE = """\
init needs a project name: on a terminal it asks; in a script, give the answers as options, \
for example:

  ./appenv init --name ops-tools --dep 'httpie>=3' --binary http

For more information, try '--help'."""


def ask(question, default, check):
    """init on a terminal: QUESTION on stderr with its default in brackets, the answer from
    stdin, asked again until CHECK takes it."""
    while True:
        sys.stderr.write("{} [{}]: ".format(question, default) if default else question + ": ")
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            raise Problem(64, "init: the input ended before every question was answered; "
                              "nothing was changed")
        try:
            return check(line.strip() or default)
        except Problem as problem:
            problem.report()


def ask_all(new):
    """Each of init's questions, the answers going into NewProject NEW."""
    say("creating a project in {}. Enter keeps the [default].".format(new.root))
    new.name = ask("Project name", default_name(new.root), project_name)
    new.description = ask("Description", "", lambda t: plain_text(t, "the description"))
    while True:
        dependency = ask("Dependency (a requirement like httpie>=3; empty to finish)", "",
                         lambda t: t and requirement_text(t))
        if not dependency:
            break
        new.dependencies.append(dependency)
    names = " ".join(libraries().canonicalize_name(libraries().Requirement(d).name)
                     for d in new.dependencies)
    new.binaries = ask("Binaries to link (names, separated by spaces; - for none)", names,
                       binary_names)
    default = default_python(new.uv(), new.root)
    new.requires_python, new.python = ask(
        "Python (a version like 3.12, or a specifier like >=3.10)", default,
        lambda t: (">=" + t, None) if t == default else python_setting(t))


class Requirements:
    """A pip requirements file read line by line as pip reads it: continuation lines joined,
    comments dropped, ${VARIABLES} expanded, each line a requirement (parsed by packaging) and/or
    options. The classic appenv's `# appenv-KEY: VALUE` comments are kept in `appenv`."""

    SHORT = {"-e": "--editable", "-i": "--index-url", "-f": "--find-links", "-r": "--requirement",
             "-c": "--constraint"}

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.requirements = []  # (line number, packaging Requirement)
        self.options = []  # (line number, option as written, its long name, value or None)
        self.unreadable = []  # (line number, the line, packaging's reason)
        self.appenv = {}  # "python-preference" -> (line number, value)
        data = read_bytes(path)
        try:
            text = data.decode("utf-8-sig")  # as pip: a byte order mark is not text
        except UnicodeDecodeError as e:
            raise Problem(65, "{} is not UTF-8 text ({})".format(path, e.reason))
        for number, line in self.lines(text):
            self.parse(number, line)

    def lines(self, text):
        """(number of its first line, text) for each logical line that is not empty."""
        pending, first = [], None
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("#"):
                key, colon, value = stripped[1:].strip().partition(":")
                if colon and key.startswith("appenv-"):
                    self.appenv.setdefault(key[len("appenv-"):], (number, value.strip()))
            if line.endswith("\\") and not stripped.startswith("#"):
                first = first or number
                pending.append(line[:-1])
                continue
            if pending and stripped.startswith("#"):  # ends the continuation, as pip reads it
                line = " " + line
            text = expand_variables(without_comment("".join(pending) + line)).strip()
            if text:
                yield first or number, text
            pending, first = [], None
        if pending:
            yield first, expand_variables(without_comment("".join(pending))).strip()

    def parse(self, number, line):
        tokens = line.split()
        split = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
        requirement = " ".join(tokens[:split])
        if requirement:
            try:
                self.requirements.append((number, libraries().Requirement(requirement)))
            except ValueError as e:
                self.unreadable.append((number, requirement, str(e).splitlines()[0]))
        options = " ".join(tokens[split:])
        if options:
            self.parse_options(number, options)

    def parse_options(self, number, text):
        import shlex

        try:
            tokens = shlex.split(text)
        except ValueError as e:
            self.unreadable.append((number, text, str(e)))
            return
        while tokens:
            token = tokens.pop(0)
            if token.startswith("--"):
                written, equals, value = token.partition("=")
                name = written
            elif token.startswith("-") and len(token) > 1:
                written, value, equals = token[:2], token[2:], token[2:]
                name = self.SHORT.get(written, written)
            else:
                continue  # a stray word after an option that had its value
            if not equals and tokens and not tokens[0].startswith("-"):
                value = tokens.pop(0)
            self.options.append((number, written, name, value or None))


def without_comment(line):
    """The line up to a `#` that starts it or follows white space, as pip reads comments."""
    for i, char in enumerate(line):
        if char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def expand_variables(line):
    """${NAME} (capitals, digits, _) replaced by the environment variable, when it is set."""
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
    out, i = [], 0
    while True:
        start = line.find("${", i)
        end = line.find("}", start + 2) if start >= 0 else -1
        if end < 0:
            return "".join(out) + line[i:]
        name = line[start + 2:end]
        value = os.environ.get(name) if name and set(name) <= allowed else None
        out.append(line[i:start] + (line[start:end + 1] if value is None else value))
        i = end + 1


class Index:
    """A package index of requirements.txt as a [[tool.uv.index]] entry. Credentials in its URL
    stay out of pyproject.toml: uv takes them from UV_INDEX_<NAME>_USERNAME and _PASSWORD."""

    def __init__(self, url, taken, default=False, flat=False):
        from urllib.parse import unquote, urlsplit, urlunsplit

        try:
            parts = urlsplit(url)
            username, password = parts.username, parts.password
        except ValueError as e:
            raise Problem(65, "requirements.txt: {} is not a URL: {}".format(redact(url), e))
        self.username = unquote(username) if username else None
        self.password = unquote(password) if password else None
        self.url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.default, self.flat = default, flat
        base = parts.hostname or os.path.basename(parts.path.rstrip("/")) or "index"
        self.name = default_name(base)
        number = 1
        while self.name in taken:
            number += 1
            self.name = "{}-{}".format(default_name(base), number)
        taken.add(self.name)

    def variables(self):
        """UV_INDEX_<NAME>_USERNAME and _PASSWORD, for the credentials the URL had."""
        key = "UV_INDEX_{}_".format(self.name.upper().replace("-", "_"))
        found = {key + "USERNAME": self.username, key + "PASSWORD": self.password}
        return {k: v for k, v in found.items() if v is not None}

    def toml(self):
        lines = ["[[tool.uv.index]]", "name = " + toml_string(self.name),
                 "url = " + toml_string(self.url)]
        if self.default:
            lines.append("default = true")
        if self.flat:
            lines.append('format = "flat"')
        return lines


def looks_like_a_path_or_url(text):
    """Whether pip would take TEXT, which is not a requirement, for a file or a URL to install
    (its rule: a path separator, a leading dot, a URL scheme, an archive's name)."""
    return "/" in text or text.startswith(".") or "://" in text or text.endswith((
        ".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz",
        ".tar.lz", ".tlz", ".tar.lzma"))  # pip's ARCHIVE_EXTENSIONS


class ClassicProject:
    """A project of the classic appenv: requirements.txt, with its pip options and
    `# appenv-python-preference: 3.9,3.10` line, and requirements.lock, the `name==version`
    pins its update-lockfile wrote under `# appenv-requirements-hash: <sha256 of requirements.txt>`.
    """

    HINTS = {
        "--editable": "an editable install: add it with `./appenv uv add --editable PATH`",
        "--hash": "uv.lock records the hash of every file itself",
        "--requirement": "add the requirements of that file by hand",
        "--constraint": "constraints go to [tool.uv] constraint-dependencies",
        "--no-index": "uv keeps the default index; set `default = true` on an index to replace it",
    }

    def __init__(self, root):
        self.root = root
        path = os.path.join(root, "requirements.txt")
        if not os.path.isfile(path):
            here = os.getcwd()
            hint = ("To migrate the project in this directory, run: python3 {} migrate {}".format(
                launcher_file(), here) if here != root and os.path.isfile("requirements.txt")
                else "To start a new project, run {} init".format(launcher_command()))
            raise Problem(66, "No requirements.txt in {}: migrate turns a classic appenv project "
                              "into pyproject.toml and uv.lock. {}".format(root, hint))
        self.txt = Requirements(path)
        self.lock_path = os.path.join(root, "requirements.lock")
        self.indexes, self.skipped, self.dependencies = [], [], []
        taken = set()
        for number, written, name, value in self.txt.options:
            if name in ("--index-url", "--extra-index-url", "--find-links") and value:
                self.indexes.append(Index(value, taken, default=name == "--index-url",
                                          flat=name == "--find-links"))
            else:
                shown = written if name == "--hash" or not value else written + " " + value
                self.skipped.append((number, shown, self.HINTS.get(name)))
        for number, requirement in self.txt.requirements:
            if requirement.url and redact(requirement.url) != requirement.url:
                self.skipped.append((number, str(requirement), "a URL with credentials"))
            else:
                self.dependencies.append(str(requirement))
        for number, line, reason in self.txt.unreadable:
            if not (line.startswith("-") or looks_like_a_path_or_url(line)):
                raise Problem(65, "{} line {}: {} is not a requirement ({}). Correct it, then "
                                  "run migrate again; nothing was changed.".format(
                                      self.txt.name, number, line, reason))
            self.skipped.append((number, line, "not a requirement: " + reason))
        self.skipped.sort(key=lambda entry: entry[0])

    def requires_python(self):
        """`>=LOWEST,<HIGHEST+1` of the python preference, or None without one."""
        number, text = self.txt.appenv.get("python-preference", (None, ""))
        libs = libraries()
        versions = []
        for item in text.split(","):
            if not item.strip():
                continue
            try:
                release = libs.Version(item.strip()).release
            except libs.InvalidVersion:
                release = ()
            if len(release) != 2:
                raise Problem(65, "{} line {}: appenv-python-preference {!r} is not a Python "
                                  "version like 3.10".format(self.txt.path, number, item.strip()))
            versions.append(release)
        if not versions:
            return None
        low, high = min(versions), max(versions)
        return ">={}.{},<{}.{}".format(low[0], low[1], high[0], high[1] + 1)

    def pins(self):
        """`name==version` for each version requirements.lock pins; whether it is stale."""
        if not os.path.isfile(self.lock_path):
            return [], False
        lock = Requirements(self.lock_path)
        canonical = libraries().canonicalize_name
        pins = {}
        for _number, requirement in lock.requirements:
            specifiers = list(requirement.specifier)
            if requirement.url or len(specifiers) != 1:
                continue
            operator, version = specifiers[0].operator, specifiers[0].version
            if operator in ("==", "===") and "*" not in version:
                name = canonical(requirement.name)
                pins[name] = "{}=={}".format(name, version)
        import hashlib

        recorded = lock.appenv.get("requirements-hash", (None, None))[1]
        actual = hashlib.sha256(read_bytes(self.txt.path)).hexdigest()
        return sorted(pins.values()), bool(recorded) and recorded != actual

    def environ(self):
        return {k: v for index in self.indexes for k, v in index.variables().items()}

    def report_skipped(self):
        if not self.skipped:
            return
        lines = ["not migrated (no equivalent in pyproject.toml; add by hand what is needed):"]
        for number, text, hint in self.skipped:
            lines.append("  {} line {}: {}{}".format(self.txt.name, number, redact(text),
                                                    "  ({})".format(hint) if hint else ""))
        say("\n".join(lines))


def project_launcher(root):
    """The file the links of the project at ROOT lead to: its own appenv (the one running
    may be another project's, with --project), else this launcher."""
    for name in LAUNCHER_NAMES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    return launcher_file()


def links_to(root, launcher):
    """The links in the project that lead to the launcher, as paths relative to ROOT: the
    binaries it runs. Hidden directories (.git, .appenv, .venv) and node_modules are skipped."""
    target = os.path.realpath(launcher)
    found = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and d not in ("node_modules", "__pycache__"))
        for name in sorted(files + [d for d in dirs if os.path.islink(
                os.path.join(directory, d))]):
            path = os.path.join(directory, name)
            if (name not in LAUNCHER_NAMES and os.path.islink(path)
                    and os.path.realpath(path) == target):
                found.append(os.path.relpath(path, root))
    return found


def remove_classic_environments(root):
    """The classic appenv's environments in .appenv: <8 hex digits>/, unclean/, updatelock/ and
    the `current` link to one. appenv's own live in .appenv/envs and are left alone."""
    base = os.path.join(root, ".appenv")
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    removed = []
    for entry in entries:
        path = os.path.join(base, entry)
        classic = entry in ("unclean", "updatelock") or (
            len(entry) == 8 and all(c in "0123456789abcdef" for c in entry))
        if entry == "current" and os.path.islink(path):
            if not os.readlink(path).startswith("envs" + os.sep):
                os.remove(path)
                removed.append(entry)
        elif classic and os.path.isdir(path) and not os.path.islink(path):
            discard(path)
            removed.append(entry + "/")
    return removed


# --- Subcommands -----------------------------------------------------------------------------


class Option:
    """An option of a command, shown as uv shows its own: `-U, --upgrade`, `--extra <EXTRA>`."""

    def __init__(self, name, help, value=None, short=None, many=False):
        self.name, self.help, self.value, self.short, self.many = name, help, value, short, many

    def label(self):
        return "{}{}{}".format(self.short + ", " if self.short else "    ", self.name,
                               " <{}>".format(self.value) if self.value else "")


def columns(rows):
    """Two aligned columns, as uv's help prints its options; a help text's lines stay lines."""
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join("  {:<{}}{}".format(label, width, text.replace("\n", "\n" + " " * (
        width + 2))) for label, text in rows)


class Subcommand:
    """A command of `./appenv`, declared once with `command`: its words, its options, and the
    Command method that runs it. Its help and the option parser are made from this, and a test
    checks docs/commands.md against its help.

    PASSES_ON says what goes on untouched: "all" (run, uv, python: every argument; --help only
    right after the command), "options" (update-lockfile: to `uv lock`, the options listed
    being the common ones) or "" (parsed here)."""

    def __init__(self, name, method, summary, usage, text, options, arguments, after, passes_on):
        self.name, self.method, self.summary, self.usage = name, method, summary, usage
        self.text, self.options, self.arguments, self.after = text, options, arguments, after
        self.passes_on = passes_on

    def help(self):
        usage = self.usage or " ".join(["[OPTIONS]"] * bool(self.options) + [
            name for name, _ in self.arguments])
        parts = [self.summary, "Usage: ./appenv {} {}".format(self.name, usage).rstrip(),
                 self.text]
        if self.arguments:
            parts.append("Arguments:\n" + columns(self.arguments))
        if self.options:
            parts.append("Options:\n" + columns([(o.label(), o.help + (
                " (repeatable)" if o.many else "")) for o in self.options]))
        return "\n\n".join(part for part in parts + [self.after] if part) + "\n"

    def parse(self, args):
        """The options given, {name: value, a list of values (repeatable), or True (a flag)},
        and the arguments; exit 64 for anything else."""
        known = {o.name: o for o in self.options}
        known.update((o.short, o) for o in self.options if o.short)
        given, arguments, args = {}, [], list(args)
        while args:
            arg = args.pop(0)
            if not arg.startswith("-") or arg == "-":
                arguments.append(arg)
                continue
            name, equals, value = arg.partition("=")
            option = known.get(name)
            if option is None:
                raise usage_error("unexpected option {!r}".format(name), self.name)
            if option.value is None:
                if equals:
                    raise usage_error("{} takes no value".format(name), self.name)
                value = True
            elif not equals:
                if not args:
                    raise usage_error("{} needs a value".format(name), self.name)
                value = args.pop(0)
            if option.many:
                given.setdefault(option.name, []).append(value)
            elif option.name in given:
                raise usage_error("{} is given twice".format(name), self.name)
            else:
                given[option.name] = value
        many = self.arguments and self.arguments[-1][0].endswith("...")
        if len(arguments) > len(self.arguments) and not many:
            raise usage_error("unexpected argument {!r}".format(arguments[len(self.arguments)]),
                              self.name)
        return given, arguments


COMMANDS = {}  # name -> Subcommand, in the order of `./appenv --help`


def command(summary, text="", options=(), arguments=(), after="", usage="", passes_on=""):
    """Declare the Command method that follows as the command of its name (_ for -)."""
    def declare(method):
        name = method.__name__.rstrip("_").replace("_", "-")  # list_: list
        COMMANDS[name] = Subcommand(name, method, summary, usage, text.strip("\n"), options,
                                    arguments, after.strip("\n"), passes_on)
        return method
    return declare


OPTIONS = [Option("--project", "The project directory [default: the launcher's directory]",
                  "DIR"),
           Option("--quiet", "Print no progress lines of appenv's, and give uv --quiet",
                  short="-q"),
           Option("--verbose", "Say each uv command before it runs (as APPENV_VERBOSE=1)",
                  short="-v"),
           Option("--help", "Display the concise help for this command", short="-h"),
           Option("--version", "Display the appenv version", short="-V")]


OUTPUT_OPTIONS = {"-q": QUIET, "--quiet": QUIET, "-v": VERBOSE, "--verbose": VERBOSE}


def did_you_mean(name, known):
    """A hint for a mistyped NAME: the closest of KNOWN, if any is close."""
    import difflib
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return "\n\n  tip: a similar name exists: {!r}".format(close[0]) if close else ""


def usage():
    return "\n\n".join([
        "Run a repository's tools from the environment its uv.lock pins",
        "Usage: ./appenv [OPTIONS] <COMMAND>\n"
        "       ./NAME [ARGS]...   (NAME a symlink to appenv: run binary NAME)",
        "Commands:\n" + columns([(name, c.summary) for name, c in COMMANDS.items()]),
        "Options:\n" + columns([(o.label(), o.help) for o in OPTIONS]),
        "Use `./appenv help <command>` for more information on a specific command.\n"])


def usage_error(message, name=None):
    text = COMMANDS[name].help() if name else usage()
    line = next(part for part in text.split("\n\n") if part.startswith("Usage:"))
    return Problem(64, "{}\n\n{}\n\nFor more information, try '--help'.".format(message, line))


PROJECT_PATH = [("[PATH]", "The project directory, created if missing [default: the launcher's "
                 "directory]")]


class Command:
    """The subcommands of `./appenv`, each declared with `command`, in the order of --help."""

    def __init__(self, root, installed):
        self.root, self.installed = root, installed

    @classmethod
    def dispatch(cls, args, installed):
        root = None
        while args and args[0].startswith("-"):
            option = args.pop(0)
            if option in OUTPUT_OPTIONS:
                OUTPUT_OPTIONS[option].append(option)
                continue
            if option in ("-h", "--help"):
                show(usage())
                return 0
            if option in ("-V", "--version"):
                show("appenv {}\n".format(__version__))
                return 0
            if option == "--project" and args:
                root = os.path.abspath(args.pop(0))
            elif option.startswith("--project="):
                root = os.path.abspath(option.split("=", 1)[1])
            else:
                raise usage_error("unexpected option {!r}".format(option))
        if not args:
            sys.stderr.write(usage())
            return 64
        name, args = args[0], args[1:]
        found = COMMANDS.get(name)
        if found is None:
            raise usage_error("unknown command {!r}{}".format(name, did_you_mean(name, COMMANDS)))
        if found.passes_on != "all":  # -q and -v after the command too, as uv takes them
            for option in [a for a in args if a in OUTPUT_OPTIONS]:
                OUTPUT_OPTIONS[option].append(option)
            args = [a for a in args if a not in OUTPUT_OPTIONS]
        # as uv does, --help anywhere among a command's options; but run, uv and python pass
        # what follows them on, so only right after the command
        if name != "help" and any(a in ("-h", "--help") for a in (
                args[:1] if found.passes_on == "all" else args)):
            show(found.help())
            return 0
        root = root or (os.getcwd() if installed else launcher_root())
        global PROJECT
        PROJECT = root
        if found.passes_on:
            return found.method(cls(root, installed), args)
        return found.method(cls(root, installed), *found.parse(args))

    @command("Create a project: pyproject.toml, the launcher, links and uv.lock", text="""
Writes into PATH: pyproject.toml with a [project] table (added to an existing pyproject.toml that
has none, its other tables kept), this launcher as `appenv`, a link NAME -> appenv per binary,
.appenv/ and .venv/ in .gitignore, and uv.lock (`uv lock`). The project is virtual (no
build-system): uv installs its dependencies, not the project itself. On a terminal without
options it asks for each value; scripts give the options, --name at least. When a step fails,
every file is put back as it was.""", arguments=PROJECT_PATH, options=[
        Option("--name", "The project's name (required without a terminal)", "NAME"),
        Option("--dep", "A dependency, like 'httpie>=3'", "REQUIREMENT", many=True),
        Option("--binary", "Link NAME -> appenv, to run the binary NAME", "NAME", many=True),
        Option("--python", "A version (3.12): requires-python >=3.12 and [tool.appenv] python;\n"
               "a specifier (>=3.10,<3.13): requires-python only [default: >=X.Y of\n"
               "the Python uv finds]", "VERSION"),
        Option("--description", "The project's description", "TEXT")], after="""
Example:
  ./appenv init --name ops-tools --dep 'httpie>=3' --binary http""")
    def init(self, options, paths):
        new = NewProject(self.target(paths), "init")
        if not options and not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise Problem(64, INIT_EXAMPLE)  # no one to ask: the questions go to stderr
        if options and "--name" not in options:
            raise Problem(64, "--name is missing. " + INIT_EXAMPLE)
        new.check()
        if options:
            new.name = project_name(options["--name"])
            new.description = plain_text(options.get("--description", ""), "--description")
            new.dependencies = [requirement_text(d) for d in options.get("--dep", [])]
            new.binaries = binary_names(" ".join(options.get("--binary", [])))
            if "--python" in options:
                new.requires_python, new.python = python_setting(options["--python"])
        else:
            ask_all(new)
        try:
            request = new.python or new.requires_python
            if request and output(new.uv().command("python", "find", "--no-project",
                                                    request)) is None:
                raise Problem(64, "uv finds no Python for {!r}, so nothing was written. Install "
                                  "one (`{} uv python install {}`), or ask for another."
                              .format(request, launcher_command(), request))
            new.create()
        except Problem as problem:
            raise Problem(problem.status, "{}\nTo run init again with these answers:\n  {}"
                          .format(problem.message, self.init_line(new, paths)))
        first = (new.where(new.binaries[0]) if new.binaries else
                 "`{} list` shows the binaries; link each to run (ln -s appenv NAME)".format(
                     launcher_command()) if new.dependencies else
                 launcher_command() + " add PACKAGE")
        say("created the project {} in {}: {}.\nNext: {}; commit the files: git add {}".format(
            new.name, new.root, ", ".join(new.written()), first, " ".join(new.written())))
        return 0

    @staticmethod
    def init_line(new, paths):
        """The `./appenv init` command line that gives NEW's answers as options."""
        import shlex
        words = [launcher_command(), "init"] + list(paths) + ["--name", new.name]
        words += [w for d in new.dependencies for w in ("--dep", d)]
        words += [w for b in new.binaries for w in ("--binary", b)]
        if new.python or new.requires_python:
            words += ["--python", new.python or new.requires_python]
        if new.description:
            words += ["--description", new.description]
        return " ".join(shlex.quote(w) for w in words)

    @command("Turn a classic appenv project into pyproject.toml and uv.lock", text="""
Reads the classic appenv's files in PATH. requirements.txt: its requirements become [project]
dependencies; its `# appenv-python-preference: 3.9,3.10` line requires-python >=3.9,<3.11;
--index-url, --extra-index-url and --find-links become [[tool.uv.index]] entries, without the
credentials in their URLs (uv reads those from UV_INDEX_<NAME>_USERNAME and _PASSWORD).
requirements.lock: the versions it pins stay the versions of the first uv.lock. Then writes what
`init` writes, this launcher replacing `appenv` (so the links to it keep working), and removes
the classic environments from .appenv. Options with no equivalent (-e, --hash, -r, -c, ...) are
listed on stderr. requirements.txt and requirements.lock are left as they are. When a step
fails, every file is put back as it was.""", arguments=[
        ("[PATH]", "The classic project's directory [default: the launcher's directory]")],
        options=[Option("--name", "The project's name [default: the directory's name]", "NAME")])
    def migrate(self, options, paths):
        root = self.target(paths)
        classic = ClassicProject(root)
        new = NewProject(root, "migrate")
        new.replace_launcher = True
        new.name = project_name(options.get("--name") or default_name(root))
        new.dependencies, new.indexes = classic.dependencies, classic.indexes
        new.requires_python = classic.requires_python()
        new.check()
        pins, stale = classic.pins()
        if stale:
            say("requirements.lock is out of date with requirements.txt (its hash differs); its "
                "versions are kept all the same")
        classic.report_skipped()
        new.create(pins, classic.environ(), hint=" If the versions requirements.lock pins are "
                   "the problem, move requirements.lock away to lock afresh." if pins else "")
        new.binaries = links_to(root, new.launcher_path)
        removed = remove_classic_environments(root)
        locked = LockDiff.packages(Project(root).lock())
        kept = [p for p in pins if p.partition("==")[2] in locked.get(p.partition("==")[0], ())]
        lines = ["migrated {} to pyproject.toml and uv.lock: requires-python {}; {}.".format(
            root, new.requires_python, "versions kept from requirements.lock: {} of {} pins{}"
            .format(len(kept), len(pins), " (the others name packages no longer needed)" if
                    len(kept) < len(pins) else "") if pins else
            "no requirements.lock, so the newest versions requirements.txt allows")]
        if new.binaries:
            lines.append("The links keep working: " + ", ".join(new.binaries))
        if removed:
            lines.append("Removed the classic environments in .appenv: " + ", ".join(removed))
        for index in new.indexes:
            if index.variables():
                lines.append(
                    "The index {} ({}) needs the credentials that were in its URL; they are kept "
                    "out of pyproject.toml. Set {} wherever uv.lock is updated or environments "
                    "are built (or use ~/.netrc, or `uv auth login`).".format(
                        index.name, index.url, " and ".join(index.variables())))
        left = ("requirements.txt and requirements.lock are left as they were; remove them"
                if os.path.exists(classic.lock_path) else
                "requirements.txt is left as it was; remove it")
        lines.append(left + " once the migration works. Commit the files: git add "
                     + " ".join(new.written()))
        say("\n".join(lines))
        return 0

    def target(self, paths):
        """PATH of init and migrate; without it, the project root."""
        return os.path.abspath(paths[0]) if paths else self.root

    @command("Build the production environment and print its path", text="""
Runs `uv sync --frozen --no-dev` into the environment a symlink would use: exactly the packages
of uv.lock for the configured extras and groups, never writing uv.lock. Prints the environment's
path on stdout; nothing else goes to stdout.""", options=[
        Option("--extra", "Also include this optional dependency", "EXTRA", many=True),
        Option("--all-extras", "Include all optional dependencies"),
        Option("--group", "Also include this dependency group", "GROUP", many=True),
        Option("--all-groups", "Include all dependency groups"),
        Option("--no-install-project", "Do not install the project itself (Docker layers)"),
        Option("--no-install-workspace", "Do not install any workspace member"),
        Option("--no-install-package", "Do not install this package", "PACKAGE", many=True)],
        after="""
With --extra or --group it builds the environment that APPENV_EXTRAS or APPENV_GROUPS, set to
the full list, select for symlinks, and says so. With a --no-install-* option the environment
is left unfinished: a later `prepare` without it completes the same environment in place, and
only then do symlinks use it; an environment already ready is left as it is.""")
    def prepare(self, options, _arguments):
        project = Project(self.root)
        extras, groups = options.get("--extra", []), options.get("--group", [])
        partial = [o for o in ("--no-install-project", "--no-install-workspace") if o in options]
        partial += [x for p in options.get("--no-install-package", [])
                    for x in ("--no-install-package", p)]
        selection = Selection.from_environ()
        if extras or groups or "--all-extras" in options or "--all-groups" in options:
            project.check()
            data = project.pyproject()
            if "--all-extras" in options:
                extras += list(table(data, "project", "optional-dependencies"))
            if "--all-groups" in options:
                groups += list(table(data, "dependency-groups"))
            selection = selection.adding(project.config(), extras, groups)
        env = build(self.root, Home(self.root).environment(selection), partial)
        if extras or groups:
            say("symlinks and `python` run in this environment with {}".format(
                selection.variables()))
        show(env.path + "\n")
        return 0

    @command("Add packages to the project, link their binaries, and lock", text="""
Runs `uv add --no-sync` at the project root (pyproject.toml and uv.lock, never uv's .venv),
summarises the lock's changes, builds the production environment (unless --no-sync) and links
each binary: those named with --binary, else the binaries of each package added, unless one of
them is linked already (on a terminal it asks for each; in a script it links them all), and
names each link.""",
        arguments=[("<PACKAGES>...", "The packages to add, as requirements (`httpie>=3`)")],
        options=[
        Option("--binary", "Link NAME -> appenv instead of the packages' binaries",
               "NAME", many=True),
        Option("--group", "Add them to this dependency group (`uv add --group`)", "GROUP"),
        Option("--no-sync", "Lock, but build nothing: only the --binary links are made")])
    def add(self, options, packages):
        if not packages:
            raise usage_error("add needs at least one package", "add")
        libs = libraries()
        names = [libs.canonicalize_name(libs.Requirement(requirement_text(p)).name)
                 for p in packages]  # 64 before uv runs
        links = [binary_name(b) for b in options.get("--binary", [])]
        for name in links:  # refused before anything changes
            if self.linkable(name) is None:
                raise Problem(65, "{} exists and is not a link to appenv; nothing was changed. "
                              "Remove it, or leave out --binary {}.".format(
                                  os.path.join(self.root, name), name))
        group = ["--group", options["--group"]] if "--group" in options else []
        env = self.change_lock(["add"] + group + packages, "adding " + " ".join(packages),
                               "--no-sync" in options)
        if links or env is None:
            if not links:
                say("no links made: with --no-sync nothing is installed to find the binaries "
                    "in; name them with --binary")
            for name in links:
                self.link(name, env)
            return 0
        offered = offered_binaries(env)
        for package in names:
            binaries = [b["name"] for b in offered if b["package"] == package]
            if not binaries:
                say("no binaries of {} in the production environment to link{}".format(
                    package, " (a dependency group is part of it only where [tool.appenv] "
                    "groups says so; run the group's tools with `{} run NAME`)".format(
                        launcher_command()) if group else ""))
            elif any(self.linkable(name) is False for name in binaries):
                say("{} is linked already (./{}): its links are left as they are".format(
                    package, next(n for n in binaries if self.linkable(n) is False)))
                continue
            for name in binaries:
                if self.linkable(name) is None:
                    say("./{} exists and is not a link to appenv: not linked".format(name))
                elif self.confirm("link ./{}".format(name)):
                    self.link(name, env)
        return 0

    @command("Remove packages from the project, their links, and lock", text="""
Runs `uv remove --no-sync` at the project root, removes the links to appenv whose binaries
came from those packages, summarises the lock's changes and builds the production environment,
unless --no-sync.""", arguments=[("<PACKAGES>...", "The names of the packages to remove")],
        options=[Option("--group", "Remove them from this dependency group", "GROUP"),
                 Option("--no-sync", "Lock, but build nothing")])
    def remove(self, options, packages):
        if not packages:
            raise usage_error("remove needs at least one package", "remove")
        before = Home(self.root).current()
        names = {libraries().canonicalize_name(p) for p in packages}
        gone = {b["name"] for b in offered_binaries(before) if b["package"] in names} if \
            before else set()
        group = ["--group", options["--group"]] if "--group" in options else []
        env = self.change_lock(["remove"] + group + packages, "removing " + " ".join(packages),
                               "--no-sync" in options)
        left = {b["name"] for b in offered_binaries(env)} if env else set()
        for path in links_to(self.root, project_launcher(self.root)):
            if os.path.basename(path) in gone - left:
                os.remove(os.path.join(self.root, path))
                say("removed the link ./{}".format(path))
        return 0

    def change_lock(self, args, step, no_sync):
        """Change pyproject.toml and uv.lock with uv ARGS, say what changed in the lock, and
        build the production environment (None with NO_SYNC)."""
        project = Project(self.root)
        project.check_present(lock=False)
        hold_project(self.root)
        before = read_bytes(project.lock_path)
        status, held = relock(self.plan_uv(), args[:1] + ["--no-sync", "--project", self.root]
                              + args[1:])
        for line in held:
            posix.write(2, line)
        if status != 0:
            raise Problem(status, "{} failed (uv exited with status {})".format(step, status))
        say(LockDiff.since(project, before, merge_base_lock(self.root)))
        if no_sync:
            return None
        return build(self.root, Home(self.root).environment(Selection.from_environ()))

    @staticmethod
    def confirm(question):
        """Yes on a terminal when the answer is (Y/n); always yes in a script."""
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return True
        sys.stderr.write("{}? [Y/n] ".format(question))
        sys.stderr.flush()
        return sys.stdin.readline().strip().lower() in ("", "y", "yes")

    def linkable(self, name):
        """Whether ./NAME is free for a link (True), a link to appenv already (False), or
        something else (None)."""
        path = os.path.join(self.root, name)
        if os.path.islink(path) and os.path.realpath(path) == os.path.realpath(
                project_launcher(self.root)):
            return False
        return None if os.path.lexists(path) else True

    def link(self, name, env):
        """Link NAME -> the launcher in the project root, unless it is one already."""
        if self.linkable(name) is False:
            say("./{} is linked already".format(name))
            return
        os.symlink(os.path.relpath(project_launcher(self.root), self.root),
                   os.path.join(self.root, name))
        missing = env is not None and not os.path.exists(os.path.join(env.path, "bin", name))
        say("linked ./{}{}".format(name, " (the environment has no such binary: it runs once "
                                   "a package provides it)" if missing else ""))

    @command("List the locked packages that have newer versions", text="""
For each package in uv.lock with a newer version: the version locked, the newest that
pyproject.toml allows (what `update-lockfile --upgrade` would lock: `uv lock --upgrade
--dry-run`) and the newest there is on the project's indexes (`uv pip compile --no-deps`, for
the Python uv finds). Writes nothing; exit 0 whether or not any is outdated.""", options=[
        Option("--json", "Print the same as JSON (fields: docs/commands.md)")])
    def outdated(self, options, _arguments):
        project = Project(self.root)
        project.check()
        uv, libs, lock = self.plan_uv(), libraries(), project.lock()
        locked = {name: versions_text(versions, libs.Version).split(", ")[-1] for name,
                  versions in LockDiff.packages(lock).items()}
        # the newest there is, of packages from an index (not a path, a URL or git)
        indexed = sorted({p["name"] for p in lock.get("package", []) if isinstance(p, dict)
                          and isinstance(p.get("source"), dict) and "registry" in p["source"]
                          and p.get("name") in locked})
        allowed = {}
        dry = captured(uv.command("lock", "--upgrade", "--dry-run", "--project", self.root))
        if dry.returncode != 0:
            sys.stderr.write(dry.stderr)
            raise Problem(dry.returncode, "finding the versions pyproject.toml allows failed "
                          "(uv lock --upgrade --dry-run exited with status {})".format(
                              dry.returncode))
        for line in dry.stderr.splitlines():  # "Update tool-a v1.0 -> v2.0"
            words = line.split()
            if len(words) == 5 and words[0] == "Update" and words[3] == "->":
                allowed[words[1]] = words[4].lstrip("v")
        newest, unknown, first = {}, [], None
        # all at once; one that has no release for this platform fails them all: then each
        for names in [indexed] + [[name] for name in indexed] * (len(indexed) > 1):
            found = captured(uv.command("pip", "compile", "--directory", self.root, "--no-deps",
                                        "--no-header", "--no-annotate", "--quiet", "-"),
                             "\n".join(names))
            first = first or found
            for line in found.stdout.splitlines():
                try:
                    requirement = libs.Requirement(line)
                    newest[requirement.name] = next(iter(requirement.specifier)).version
                except (ValueError, StopIteration):
                    continue
            if found.returncode == 0 and names is indexed:
                break
            if found.returncode != 0 and len(names) == 1:
                unknown.append(names[0])
        if len(indexed) > 1 and len(unknown) == len(indexed):
            sys.stderr.write(first.stderr)  # not one package: the index, the network
            raise Problem(first.returncode, "finding the newest versions failed (uv pip compile "
                          "exited with status {})".format(first.returncode))
        report = []
        for name, version in sorted(locked.items()):
            row = {"name": name, "locked": version, "allowed": allowed.get(name, version),
                   "newest": newest.get(libs.canonicalize_name(name))}
            try:
                if any(libs.Version(v) > libs.Version(version) for v in (row["allowed"],
                                                                           row["newest"]) if v):
                    report.append(row)
            except ValueError:  # not a version packaging reads: not compared
                continue
        if "--json" in options:
            import json
            show(json.dumps(report, indent=2) + "\n")
        elif report:
            rows = [("Package", "Locked", "Allowed", "Newest")] + [
                (r["name"], r["locked"], r["allowed"], r["newest"] or "?") for r in report]
            width = [max(len(row[i]) for row in rows) for i in range(4)]
            show("".join("  ".join(cell.ljust(w) for cell, w in zip(row, width)).rstrip() + "\n"
                         for row in rows))
        else:
            say("{} locked package is at its newest version".format("every other" if unknown
                                                                     else "every"))
        if unknown:
            say("the newest version of {} is unknown: uv finds none for this machine's Python "
                "and platform (`{} uv pip compile --no-deps -` says why)".format(
                    ", ".join(unknown), launcher_command()))
        return 0

    @command("Update uv.lock from pyproject.toml and summarise the changes", text="""
Runs `uv lock` at the project root, then lists each package added, removed, upgraded or
downgraded, with its versions. Every option is passed to `uv lock`; the common ones:""",
        passes_on="options", options=[
        Option("--upgrade", "Allow package upgrades, ignoring pinned versions", short="-U"),
        Option("--upgrade-package", "Allow upgrades for one package (PACKAGE or PACKAGE==VERSION)",
               "PACKAGE", short="-P"),
        Option("--check", "Check that uv.lock is up to date; exit 1 when it is not"),
        Option("--dry-run", "Show what would change, and write nothing")])
    def update_lockfile(self, args):
        project = Project(self.root)
        uv = self.plan_uv()
        checking = "--check" in args or "--locked" in args
        dry_run = "--dry-run" in args
        if checking and not project.has_lock():
            regular_file(project.lock_path)  # a directory there: 66, saying so
            raise Problem(1, "No uv.lock found. Run: {} update-lockfile, then commit uv.lock"
                          .format(launcher_command()))
        hold_project(self.root)
        conflicted = project.lock_conflict()
        if conflicted is not None:
            if checking or dry_run:
                raise Problem(1 if checking else 65, (
                    "uv.lock has git merge conflict markers. Resolve pyproject.toml, then run "
                    "{} update-lockfile (without {}), then commit uv.lock."
                ).format(launcher_command(), "--check" if checking else "--dry-run"))
            before = project.take_our_side_of_lock(conflicted, merge_base_lock(self.root))
        else:
            before = read_bytes(project.lock_path)  # parsed only if uv changes it
        status = None
        try:
            status, held = relock(uv, ["lock", "--project", self.root] + list(args),
                                  changes_too=dry_run)
        finally:
            if conflicted is not None and status != 0:
                write_atomically(project.lock_path, conflicted)  # as it was: nothing lost
        if status != 0:
            if checking and held:
                raise Problem(1, "uv.lock is out of date with pyproject.toml. Run: {} "
                                 "update-lockfile, then commit uv.lock".format(launcher_command()))
            for line in held:
                posix.write(2, line)
            raise Problem(status, "updating uv.lock failed (uv lock exited with status {})"
                          .format(status))
        if checking:
            say("uv.lock is up to date")
            return 0
        if dry_run:
            say("dry run: uv.lock was not written; uv lists above what would change, if anything")
            return 0
        say(LockDiff.since(project, before, merge_base_lock(self.root)))
        return 0

    @command("Run a command with `uv run` in the project's development environment", text="""
Runs `uv run --project <root> ...` in the current directory: uv's own environment (.venv, the dev
group included), locked and synced as uv decides. Every `uv run` option passes through
(--exact, --no-sync, --frozen, --locked, --with, --group, ...).""",
        usage="[UV RUN OPTIONS] <COMMAND> [ARGS]...", passes_on="all")
    def run(self, args):
        uv = self.plan_uv()
        import itertools  # the options before the command, as far as they can be told apart
        if "--locked" in itertools.takewhile(lambda arg: arg.startswith("-"), args):
            status = uv.run(["lock", "--check", "--project", self.root])
            if status == 1:
                raise Problem(1, "uv.lock is out of date with pyproject.toml and --locked was "
                                 "given. Run: {} update-lockfile".format(launcher_command()))
        uv.exec(["run", "--project", self.root] + list(args))

    @command("Run uv at the project root", text="""
Runs the uv appenv found or installed, in the project root, with ARGS; its exit status is
appenv's.""", usage="[ARGS]...", passes_on="all")
    def uv(self, args):
        self.plan_uv().exec(list(args), cwd=self.root)

    def plan_uv(self):
        """The uv of the build plan for pyproject.toml as it is: remembered by a build or an
        earlier command, so that nothing parses TOML or asks uv for its version again."""
        plan = Plan.of(self.root, Selection.from_environ())
        member_files(self.root, plan.member_patterns)  # 66 for a FIFO, where uv would block
        return plan.uv

    @command("Run the production environment's Python", text="""
Builds the production environment when needed (as a symlink would), then runs its python with
ARGS in the current directory.""", usage="[ARGS]...", passes_on="all")
    def python(self, args):
        return production_environment(self.root).exec("python", args)

    @command("List the project's links and the binaries its environment offers", text="""
Builds the production environment when needed (as a symlink would), then lists each link to
appenv in the project with the binary it runs and whether the environment has it, and every
binary the environment's packages install (console scripts and programs): those of the
project's direct dependencies first, with their package and version.""", options=[
        Option("--json", "Print the same as JSON (fields: docs/commands.md)")])
    def list_(self, options, _arguments):
        env = production_environment(self.root)
        offered = offered_binaries(env)
        names = {b["name"] for b in offered}
        links = [{"name": os.path.basename(path), "path": path,
                  "exists": os.path.basename(path) in names}
                 for path in links_to(self.root, project_launcher(self.root))]
        if "--json" in options:
            import json
            show(json.dumps({"links": links, "binaries": offered}, indent=2) + "\n")
            return 0
        lines = ["Links:"]
        for link in links:
            lines.append("  {:<24} {}".format(link["path"], "runs " + link["name"] if link[
                "exists"] else "no such binary in the environment"))
        lines += [] if links else ["  none"]
        lines.append("Binaries of the environment:")
        for binary in offered:
            lines.append("  {:<24} {} {}{}".format(binary["name"], binary["package"], binary[
                "version"], "  (a direct dependency)" if binary["direct"] else ""))
        lines += [] if offered else ["  none"]
        show("\n".join(lines) + "\n")
        return 0

    @command("Show the project, uv, the lock and the environments", text="""
Shows the project root, appenv's version, the uv appenv uses and how it was found, whether
uv.lock is present and up to date with pyproject.toml (`uv lock --check --offline`), the
production environment (ready, changed, unusable, partial, building, incomplete, stale or
missing, and its Python), the environments kept, and each symlink in the project with whether
its binary exists. Installs nothing and builds nothing.""", options=[
        Option("--json", "Print the same as JSON (fields: docs/commands.md)")])
    def status(self, options, _arguments):
        NO_INSTALL.append(True)  # status reports; what a build needs, the build installs
        report = Status(self.root).collect()
        if "--json" in options:
            import json
            show(json.dumps(report, indent=2) + "\n")
        else:
            show(Status.text(report))
        return 0

    @command("Remove appenv's environments", text="""
Removes every environment appenv built for this project, except those a running process still
uses (it names them; run reset again once they have ended). Never touches uv.lock or .venv.
The next run builds the environment again.""")
    def reset(self, _options, _arguments):
        home = Home(self.root)
        if not os.path.isdir(home.path):
            say("no environments in {}".format(home.path))
            return 0
        kept = []
        with Builder(home):
            for memos in ("pyproject", "relevant", "members"):  # worked out again when needed
                remove_tree(os.path.join(home.path, memos))
            entries = sorted(os.listdir(home.envs))
            for entry in entries:
                if not discard_unless_in_use(os.path.join(home.envs, entry)):
                    kept.append(entry)
            current = home.current()
            if not current or current.key not in kept:
                try:
                    os.remove(os.path.join(home.path, "current"))
                except FileNotFoundError:
                    pass
        if kept:
            say("kept {} in use by running processes; run reset again when they have ended:\n  {}"
                .format(plural(len(kept), "environment"),
                        "\n  ".join(os.path.join(home.envs, k) for k in kept)))
        say(("removed the environments in {}" if entries else "no environments in {}").format(
            home.path))
        return 0

    @command("Write this appenv over a project's launcher", text="""
Replaces PATH/appenv (PATH: a project directory or the launcher file; default: the project)
with the appenv that runs this command, in one atomic rename, keeping it executable. Symlinks
keep working; environments are kept. Typical use: a newer appenv.py updates a project's copy:

  python3 ~/src/appenv/appenv.py self-update /srv/app""", arguments=[
        ("[PATH]", "The project directory, or its launcher [default: the project]")],
        options=[Option("--check", "Only compare; exit 1 when the launcher differs from this "
                                   "appenv")])
    def self_update(self, options, paths):
        target = os.path.abspath(paths[0] if paths else self.root)
        if os.path.isdir(target):
            target = os.path.join(target, "appenv")
        target = os.path.realpath(target)
        mine = read_bytes(launcher_file())
        theirs = read_bytes(target)
        if theirs is None:
            raise Problem(66, "no launcher at {}. To start a project there, run: python3 {} "
                              "init {}".format(target, launcher_file(), os.path.dirname(target)))
        if theirs == mine:
            say("{} is up to date (appenv {})".format(target, __version__))
            return 0
        if "--check" in options:
            me = launcher_file()
            raise Problem(1, "{} (appenv {}) differs from {} (appenv {}). To update it, run: "
                             "python3 {} self-update {}".format(
                                 target, launcher_version(theirs), me, __version__, me,
                                 os.path.dirname(target)))
        try:  # whole or not at all: a launch that starts meanwhile reads one or the other
            write_atomically(target, mine, mode=0o755)
        except OSError as e:
            raise Problem(73, "cannot write {}: {}".format(target, e.strerror))
        old = launcher_version(theirs)
        say("updated {} from appenv {} to {}{}".format(target, old, __version__, (
            " (the same version, another content)" if old == __version__ else "")))
        return 0

    @command("Display documentation for a command", arguments=[
        ("[COMMAND]", "The command to explain [default: all of them, briefly]")])
    def help(self, _options, names):
        if names and names[0] not in COMMANDS:
            raise usage_error("unknown command {!r}".format(names[0]))
        show(COMMANDS[names[0]].help() if names else usage())
        return 0


def launcher_version(source):
    """The __version__ a launcher's source assigns, or "unknown"."""
    import ast
    try:
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and any(
                    getattr(t, "id", None) == "__version__" for t in node.targets):
                return ast.literal_eval(node.value)
    except (SyntaxError, ValueError):
        pass
    return "unknown"


class Status:
    """What `status` reports: data first (the --json output), then the same as text."""

    def __init__(self, root):
        self.root = root
        self.project, self.home = Project(root), Home(root)
        self.problems = []
        self.found_uv = None

    def collect(self):
        env = self.home.environment(Selection.from_environ())
        production = self.environment(env)
        return {
            "project": self.root,
            "appenv": {"version": __version__, "launcher": launcher_file()},
            "pyproject": os.path.isfile(self.project.pyproject_path),
            "uv": self.uv(),
            "lock": {"present": self.project.has_lock(), "up_to_date": self.lock_up_to_date()},
            "environment": production,
            "environments": self.environments(),
            "links": self.links(env, production["state"] == "ready"),
            "problems": self.problems,
        }

    def config(self):
        try:
            self.project.check(lock=False)
            return self.project.config()
        except Problem as problem:
            self.problems.append(problem.message)
            return None

    def uv(self):
        plan = Plan.recall(Plan.key_for(self.root, Selection.from_environ()))
        uv = plan.uv if plan else None
        if uv is None:  # pyproject.toml not seen before: read it for required-version
            config = self.config()
            try:
                uv = Uv.find(self.root, config.required_uv if config else None, install=False)
            except Problem as problem:
                self.problems.append(problem.message)
        if uv is None:
            return {"path": None, "version": None, "found": None}
        self.found_uv = uv
        return {"path": uv.path, "version": str(uv.version), "found": uv.how}

    def lock_up_to_date(self):
        """`uv lock --check --offline`: true, false, or null when it cannot tell."""
        if not self.project.has_lock() or self.found_uv is None:
            return None
        try:
            self.project.check_present()  # a FIFO would block uv: not to be told
            if self.project.lock_conflict() is not None:
                return False
            try:
                patterns = self.project.member_patterns()
            except NotAtHand:  # no TOML library: the members' files go unchecked
                patterns = []
            member_files(self.root, patterns)
        except Problem:
            return None
        command = self.found_uv.command("lock", "--check", "--offline", "--project", self.root)
        return {0: True, 1: False}.get(captured(command).returncode)

    def environment(self, env):
        if env.is_ready(hold=False):
            state = "ready"
        elif env.python_denied():
            state = "unusable"  # built, but its Python is out of this user's reach: 126
        elif os.path.exists(env.marker):
            state = "changed"  # by hand, or its interpreter is gone: the next run rebuilds it
        elif os.path.exists(os.path.join(env.path, PARTIAL)):
            state = "partial"  # `prepare --no-install-*`: a run or `prepare` completes it
        elif os.path.isdir(env.path):
            state = "building" if self.building() else "incomplete"  # else stopped: rebuilt
        elif self.home.current():
            state = "stale"  # built for other files: the next run builds this one
        else:
            state = "missing"
        return {"fingerprint": env.key, "path": env.path, "state": state,
                "python": env.python() if state == "ready" else None,
                "extras": env.selection.extras, "groups": env.selection.groups}

    def building(self):
        """Whether another appenv holds the home's lock, so builds in it now."""
        return bool(held(self.home.path + "/lock"))

    def environments(self):
        import time
        current = self.home.current()
        found = []
        try:
            entries = sorted(os.listdir(self.home.envs))
        except OSError:
            entries = []
        paths = [os.path.join(self.home.envs, key) for key in entries]
        running = runs_from(paths)  # one look at /proc for all; unknowable: in use
        running = set(paths) if running is None else running
        for key in entries:
            if key.startswith("."):
                continue
            env = Environment(self.home, key, None)
            if os.path.exists(env.marker):
                state = "ready"
            elif os.path.exists(os.path.join(env.path, PARTIAL)):
                state = "partial"
            else:
                state = "building" if self.building() else "incomplete"
            used = None
            if state == "ready":
                used = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(
                    os.stat(env.marker).st_mtime))
            found.append({"fingerprint": key, "path": env.path, "state": state,
                          "current": bool(current and current.key == key),
                          "in_use": in_use(env.path, running), "python": env.python(),
                          "last_used": used})
        return found

    def links(self, env, ready):
        """Each symlink in the project that leads to this launcher, and whether it runs."""
        found = []
        for path in links_to(self.root, project_launcher(self.root)):
            name = os.path.basename(path)
            binary = os.path.exists(os.path.join(env.path, "bin", name)) if ready else None
            found.append({"name": name, "path": path, "binary": binary})
        return found

    @staticmethod
    def text(report):
        def yes(value, true="yes", false="no", none="unknown"):
            return none if value is None else (true if value else false)

        uv, lock, env = report["uv"], report["lock"], report["environment"]
        lines = [
            "Project:      {}".format(report["project"]),
            "appenv:       {} ({})".format(report["appenv"]["version"],
                                          report["appenv"]["launcher"]),
            "uv:           " + ("{} {} (found: {})".format(uv["path"], uv["version"], uv["found"])
                                if uv["path"] else "not found (installed on first use{})".format(
                                    ", which UV_OFFLINE prevents" if truthy(getenv("UV_OFFLINE"))
                                    else "")),
            "uv.lock:      " + ("missing" if not lock["present"] else "present, " + yes(
                lock["up_to_date"], "up to date with pyproject.toml",
                "outdated: run ./appenv update-lockfile", "up to date: unknown ({})".format(
                    "uv lock --check --offline could not tell" if uv["path"] else
                    "no uv at hand to ask"))),
            "Environment:  {} ({}{})".format(env["path"], env["state"], ", Python " +
                                             env["python"] if env["python"] else ""),
        ]
        if report["environments"]:
            lines.append("Environments kept:")
            for e in report["environments"]:
                notes = [e["state"]] + (["current"] if e["current"] else []) + (
                    ["in use"] if e["in_use"] else []) + (
                    ["last used " + e["last_used"]] if e["last_used"] else [])
                lines.append("  {}  {}".format(e["fingerprint"], ", ".join(notes)))
        if report["links"]:
            lines.append("Links:")
            for link in report["links"]:
                lines.append("  {:<20} {}".format(link["path"], yes(
                    link["binary"], "ok", "no such binary in the environment",
                    "unknown until the environment is built")))
        for problem in report["problems"]:
            lines.append("Problem:      " + problem.replace("\n", "\n              "))
        return "\n".join(lines) + "\n"


def cli():
    """The console script of an installed appenv: the project is the working directory."""
    sys.exit(main(installed=True))


if __name__ == "__main__":
    sys.exit(main())
