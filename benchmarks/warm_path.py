"""Print the ratios of SPEC section 11 from one interleaved run.

    python3 benchmarks/warm_path.py [--rounds N]

Needs uv on PATH (or APPENV_UV). Builds projects in a temporary folder whose dependency is a
trivial console script from a local wheel, so that what is measured is the launcher. uv finds
packages only there: UV_FIND_LINKS is that flat index and UV_DEFAULT_INDEX an empty directory,
so no network index is asked. Every command gets the same XDG_CACHE_HOME inside the temporary
folder (where appenv remembers the interpreter found for each PATH), and a PATH that says which
python3 the launcher finds:

  plain  PATH starts with a folder of the benchmark's own holding only `python3`, a symlink to
         the real interpreter (os.path.realpath(sys.executable)); every command but one uses it.
  shim   PATH starts with `$(pyenv root)/shims`, where `python3` is pyenv's shim; only the
         "warm, shim" command uses it. Without pyenv its row is skipped, with a note.

Each command runs once, untimed, before the rounds, so that each is measured warm (appenv's
caches filled for each PATH, .venv synced). Each round then runs every warm command once in a
shuffled order, so that machine noise falls on all of them alike, then the disk-heavy ones; the
figures are medians. Nothing here is pass/fail: it prints. The rows (SPEC section 11):

  warm ./tool vs uv run --frozen --no-dev tool   ./tool-a in a prepared project, plain PATH
  warm ./tool, pyenv shim, vs the same           the same ./tool-a, shim PATH
  warm ./tool vs <env>/bin/tool                  the console script run directly
  first run after switching back vs warm         uv.lock switched to B and back to A, first run
  fresh clone vs uv sync + binary                a copy without .appenv, uv's cache warm
  fresh clone, new pyproject.toml, vs the same   a clone whose pyproject.toml is new to appenv
  ./appenv run CMD vs uv run CMD                 both sync and use the project's .venv
  ./appenv update-lockfile vs uv lock            nothing to change, in a copy of the project
                                                 ("lockproj") whose uv.lock stays lock A
  warm with a 1 MB uv.lock                       ms more than warm

The "floor" rows time `python3 -I -S -c` exec'ing the command: the least any launcher written
in Python adds. The "floor, sh lines" rows time appenv's own lines at the top (the sh that picks
the interpreter from appenv's cache) with a Python part that only execs: the least a launcher
that starts as appenv does adds, before any of its work; for a fresh clone that cost is added to
`uv sync` plus the binary. A target below its floor cannot be met on this machine by such a
launcher. One more row, not in SPEC section 11, times a fresh clone whose uv.lock this machine
has not built before.
"""

import argparse
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
import wheels  # noqa: E402

UV = os.environ.get("APPENV_UV") or shutil.which("uv")
# `python3 -I -S -c EXEC PROGRAM ARGS...` starts Python and execs PROGRAM: the floor of a launcher
EXEC = "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"
CLONE_IGNORE = shutil.ignore_patterns(".appenv", ".venv")  # what a fresh clone lacks


def sh_lines_floor(base):
    """A launcher made of appenv.py's lines at the top, its Python part replaced by an exec of
    the arguments: `floor-launcher PROGRAM ARGS...` runs PROGRAM as appenv would start."""
    with open(os.path.join(REPO, "appenv.py")) as f:
        text = f.read()
    start = text.index("exec \"$p\" ")
    flags = text[start:text.index(" -c '", start)]  # exec "$p" and the flags appenv gives
    end = text.index("\n'''", start)
    path = os.path.join(base, "floor-launcher")
    with open(path, "w") as f:
        f.write(text[:start] + "{} -c '{}' \"$@\"\n".format(flags, EXEC) + text[end:])
    os.chmod(path, 0o755)
    return path


def timed(argv, env, cwd):
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return (time.perf_counter() - start) * 1000


def project(base, name, index, env, pad=0):
    root = os.path.join(base, name)
    os.makedirs(root)
    shutil.copy(os.path.join(REPO, "appenv.py"), os.path.join(root, "appenv"))
    os.symlink("appenv", os.path.join(root, "tool-a"))
    with open(os.path.join(root, "pyproject.toml"), "w") as f:
        f.write('[project]\nname = "bench"\nversion = "0"\nrequires-python = ">=3.8"\n'
                'dependencies = ["tool-a==1.0"]\n')
    subprocess.run([UV, "lock", "--project", root], env=env, check=True, capture_output=True)
    if pad:  # a 1 MB uv.lock: what the warm path pays per byte is the same for any content
        with open(os.path.join(root, "uv.lock"), "a") as f:
            line = "# " + "x" * 97 + "\n"
            f.write(line * (pad // len(line)))
    return root


def pyenv_shims(env):
    """`$(pyenv root)/shims` when its python3 shim runs here, else (None, why not)."""
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return None, "pyenv is not installed (no pyenv on PATH)"
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
    shims = os.path.join(root, "shims")
    if not os.access(os.path.join(shims, "python3"), os.X_OK):
        return None, "{} has no python3 shim".format(shims)
    check = subprocess.run(["python3", "-c", "pass"], capture_output=True, text=True,
                           env=dict(env, PATH=shims + os.pathsep + env["PATH"]))
    if check.returncode != 0:
        return None, "pyenv's python3 shim fails here: {}".format(check.stderr.strip())
    return shims, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    if not UV:
        sys.exit("benchmarks/warm_path.py needs uv on PATH or APPENV_UV")
    base = tempfile.mkdtemp(prefix="appenv-bench-")
    index = os.path.join(base, "index")
    os.makedirs(index)
    wheels.tool_wheel(index, "tool-a", "1.0")
    wheels.tool_wheel(index, "tool-a", "2.0")
    no_index = os.path.join(base, "no-index")
    os.makedirs(no_index)
    # plain: PATH's first python3 is the real interpreter, in a folder that holds nothing else
    plain_bin = os.path.join(base, "plain-bin")
    os.makedirs(plain_bin)
    python = os.path.join(plain_bin, "python3")
    os.symlink(os.path.realpath(sys.executable), python)
    caller_path = os.environ.get("PATH", os.defpath)
    env = dict(os.environ, PATH=plain_bin + os.pathsep + caller_path, UV_FIND_LINKS=index,
               UV_DEFAULT_INDEX=pathlib.Path(no_index).as_uri(),
               UV_CACHE_DIR=os.path.join(base, "uv-cache"),
               XDG_CACHE_HOME=os.path.join(base, "xdg-cache"),
               APPENV_UV=UV, UV_PYTHON_DOWNLOADS="never")
    for name in ("VIRTUAL_ENV", "APPENV_PYTHON", "UV_PROJECT_ENVIRONMENT"):
        env.pop(name, None)  # APPENV_PYTHON would bypass PATH; uv run is to use .venv
    shims, no_shim = pyenv_shims(env)
    shim_env = dict(env, PATH=shims + os.pathsep + caller_path) if shims else None

    floor = sh_lines_floor(base)
    small = project(base, "small", index, env)
    big = project(base, "big", index, env, pad=1_000_000)
    envdir = subprocess.run([os.path.join(small, "appenv"), "prepare"], env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
    subprocess.run([os.path.join(big, "appenv"), "prepare"], env=env, check=True,
                   capture_output=True)
    # The lock rows run in a copy, since the switch back below rewrites the small project's
    # uv.lock: there uv.lock is always lock A, and locking finds nothing to change.
    lockproj = os.path.join(base, "lockproj")
    shutil.copytree(small, lockproj, symlinks=True, ignore=CLONE_IGNORE)
    lock_in_lockproj = open(os.path.join(lockproj, "uv.lock")).read()
    # A second lock in the small project, used once, so that switching back finds it ready.
    lock_a = open(os.path.join(small, "uv.lock")).read()
    uv_run_env = dict(env, UV_PROJECT_ENVIRONMENT=envdir)
    runs = {
        "warm": ([os.path.join(small, "tool-a")], env, small),
        "warm, shim": ([os.path.join(small, "tool-a")], shim_env, small),
        "direct": ([os.path.join(envdir, "bin", "tool-a")], env, small),
        "floor sh, binary": ([floor, os.path.join(envdir, "bin", "tool-a")], env, small),
        "uv run --frozen": ([UV, "run", "--frozen", "--no-dev", "--project", small, "tool-a"],
                            uv_run_env, small),
        "warm 1MB": ([os.path.join(big, "tool-a")], env, big),
        "appenv run": ([os.path.join(small, "appenv"), "run", "tool-a"], env, small),
        "uv run": ([UV, "run", "--project", small, "tool-a"], env, small),
        "floor uv run": ([python, "-I", "-S", "-c", EXEC, UV, "run", "--project", small,
                          "tool-a"], env, small),
        "update-lockfile": ([os.path.join(lockproj, "appenv"), "update-lockfile"], env,
                            lockproj),
        "uv lock": ([UV, "lock", "--project", lockproj], env, lockproj),
        "floor uv lock": ([python, "-I", "-S", "-c", EXEC, UV, "lock", "--project", lockproj],
                          env, lockproj),
        "floor sh, uv lock": ([floor, UV, "lock", "--project", lockproj], env, lockproj),
    }
    if not shims:
        del runs["warm, shim"]
    times = {k: [] for k in list(runs) + ["switch back", "fresh clone", "uv sync + binary",
                                          "new uv.lock", "new project"]}
    for name in runs:  # untimed: appenv's caches for each PATH filled, .venv synced
        timed(*runs[name])
    for i in range(rounds):
        # in a new order each round, so that no command always runs after the disk work below
        for name in random.sample(list(runs), len(runs)):
            times[name].append(timed(*runs[name]))
        if open(os.path.join(lockproj, "uv.lock")).read() != lock_in_lockproj:
            sys.exit("uv.lock in {} changed: update-lockfile had something to do".format(
                lockproj))
        # switch to B (tool-a 2.0, built once in round 0), then back to A: time the first run
        with open(os.path.join(small, "uv.lock"), "w") as f:
            f.write(lock_a.replace('"1.0"', '"2.0"').replace("tool_a-1.0", "tool_a-2.0"))
        if i == 0:
            timed([os.path.join(small, "tool-a")], env, small)
        with open(os.path.join(small, "uv.lock"), "w") as f:
            f.write(lock_a)
        times["switch back"].append(timed([os.path.join(small, "tool-a")], env, small))
        # a fresh clone, uv's cache warm: appenv's first run vs uv sync then the binary, in
        # either order, so that neither always pays for flushing what the other wrote
        for first in random.sample(["fresh clone", "uv sync + binary"], 2):
            clone = os.path.join(base, "clone-{}".format(i))
            shutil.copytree(small, clone, symlinks=True, ignore=CLONE_IGNORE)
            if first == "fresh clone":
                times[first].append(timed([os.path.join(clone, "tool-a")], env, clone))
            else:
                start = time.perf_counter()
                subprocess.run([UV, "sync", "--frozen", "--no-dev", "--project", clone],
                               env=env, check=True, capture_output=True)
                subprocess.run([os.path.join(clone, ".venv", "bin", "tool-a")], check=True,
                               capture_output=True)
                times[first].append((time.perf_counter() - start) * 1000)
            shutil.rmtree(clone)
        # a fresh clone whose uv.lock (the plan recalled) or pyproject.toml (the plan worked
        # out: TOML, packaging, `uv --version`) this machine has not built before
        for name, changed in (("new uv.lock", "uv.lock"), ("new project", "pyproject.toml")):
            clone = os.path.join(base, "clone-{}".format(i))
            shutil.copytree(small, clone, symlinks=True, ignore=CLONE_IGNORE)
            with open(os.path.join(clone, changed), "a") as f:
                f.write("# {} {}\n".format(i, random.random()))
            times[name].append(timed([os.path.join(clone, "tool-a")], env, clone))
            shutil.rmtree(clone)
    m = {k: statistics.median(v) for k, v in times.items()}
    m["floor sh, clone"] = m["uv sync + binary"] + m["floor sh, binary"] - m["direct"]
    print("plain: PATH starts with {} (python3 -> {})".format(plain_bin,
                                                              os.path.realpath(python)))
    print("shim:  " + ("PATH starts with {}".format(shims) if shims else "skipped: " + no_shim))
    print("medians over {} interleaved rounds (ms):".format(rounds))
    for k, v in m.items():
        print("  {:<18} {:7.1f}".format(k, v))
    print("Not in SPEC section 11:")
    print("  fresh clone with a new uv.lock vs uv sync + binary  {:5.2f}x".format(
        m["new uv.lock"] / m["uv sync + binary"]))
    print("SPEC section 11:")
    uv_run_frozen = "uv run --frozen --no-dev tool"
    rows = [
        ("warm ./tool vs " + uv_run_frozen, "warm", "uv run --frozen", "<= 0.9x"),
        ("warm ./tool with python3 behind a pyenv shim vs " + uv_run_frozen,
         "warm, shim", "uv run --frozen", "<= 0.8x"),
        ("  floor, sh lines: exec <env>/bin/tool vs " + uv_run_frozen, "floor sh, binary",
         "uv run --frozen", None),
        ("warm ./tool vs <env>/bin/tool", "warm", "direct", "<= 2.0x"),
        ("first run after switching back vs warm", "switch back", "warm", "<= 1.5x"),
        ("fresh clone vs uv sync + binary", "fresh clone", "uv sync + binary", "<= 1.3x"),
        ("  floor, sh lines: their cost added to uv sync + binary", "floor sh, clone",
         "uv sync + binary", None),
        ("fresh clone with a pyproject.toml never built vs uv sync + binary",
         "new project", "uv sync + binary", "<= 1.5x"),
        ("./appenv run CMD vs uv run CMD", "appenv run", "uv run", "<= 1.35x"),
        ("  floor: python3 -I -S -c exec uv run vs uv run", "floor uv run", "uv run", None),
        ("./appenv update-lockfile with nothing to change vs uv lock",
         "update-lockfile", "uv lock", "<= 1.5x"),
        ("  floor: python3 -I -S -c exec uv lock vs uv lock", "floor uv lock", "uv lock", None),
        ("  floor, sh lines: exec uv lock vs uv lock", "floor sh, uv lock", "uv lock", None),
    ]
    width = max(len(row[0]) for row in rows)
    for label, numerator, denominator, target in rows:
        if numerator not in m:
            print("  {:<{}}  skipped: {}".format(label, width, no_shim))
            continue
        print("  {:<{}} {:5.2f}x  ({})".format(label, width, m[numerator] / m[denominator],
                                               "target " + target if target else "no target"))
    print("  {:<{}} {:+5.1f} ms (target <= +3 ms)".format("warm with a 1 MB uv.lock", width,
                                                         m["warm 1MB"] - m["warm"]))
    shutil.rmtree(base)


if __name__ == "__main__":
    main()
