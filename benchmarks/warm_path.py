"""Print the ratios of SPEC section 11 from one interleaved run.

    python3 benchmarks/warm_path.py [--rounds N]

Needs uv on PATH (or APPENV_UV). Builds a project in a temporary folder whose dependency is a
trivial console script from a local wheel, so that what is measured is the launcher. Each round
runs every command once, the warm ones in a shuffled order, so that machine noise falls on all
of them alike; the figures are medians. Nothing here is pass/fail: it prints. Two more rows,
not in SPEC section 11, time a fresh clone whose uv.lock, or pyproject.toml, this machine has not
built before.
"""

import argparse
import os
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
    env = dict(os.environ, UV_FIND_LINKS=index, UV_CACHE_DIR=os.path.join(base, "uv-cache"),
               APPENV_UV=UV, UV_PYTHON_DOWNLOADS="never")
    env.pop("VIRTUAL_ENV", None)
    small = project(base, "small", index, env)
    big = project(base, "big", index, env, pad=1_000_000)
    envdir = subprocess.run([os.path.join(small, "appenv"), "prepare"], env=env, check=True,
                            capture_output=True, text=True).stdout.strip()
    subprocess.run([os.path.join(big, "appenv"), "prepare"], env=env, check=True,
                   capture_output=True)
    # A second lock in the small project, used once, so that switching back finds it ready.
    lock_a = open(os.path.join(small, "uv.lock")).read()
    uv_run_env = dict(env, UV_PROJECT_ENVIRONMENT=envdir)
    times = {k: [] for k in ("warm", "direct", "uv run", "warm 1MB", "switch back",
                             "fresh clone", "uv sync + binary", "new uv.lock", "new project")}
    runs = {
        "warm": ([os.path.join(small, "tool-a")], env, small),
        "direct": ([os.path.join(envdir, "bin", "tool-a")], env, small),
        "uv run": ([UV, "run", "--frozen", "--no-dev", "--project", small, "tool-a"],
                   uv_run_env, small),
        "warm 1MB": ([os.path.join(big, "tool-a")], env, big),
    }
    for i in range(rounds):
        # in a new order each round, so that no command always runs after the disk work below
        for name in random.sample(list(runs), len(runs)):
            times[name].append(timed(*runs[name]))
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
            shutil.copytree(small, clone, symlinks=True,
                            ignore=shutil.ignore_patterns(".appenv"))
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
        # not in SPEC 11: a fresh clone whose uv.lock (the plan recalled) or pyproject.toml (the
        # plan worked out: TOML, packaging, `uv --version`) this machine has not built before
        for name, changed in (("new uv.lock", "uv.lock"), ("new project", "pyproject.toml")):
            clone = os.path.join(base, "clone-{}".format(i))
            shutil.copytree(small, clone, symlinks=True,
                            ignore=shutil.ignore_patterns(".appenv"))
            with open(os.path.join(clone, changed), "a") as f:
                f.write("# {} {}\n".format(i, random.random()))
            times[name].append(timed([os.path.join(clone, "tool-a")], env, clone))
            shutil.rmtree(clone)
    m = {k: statistics.median(v) for k, v in times.items()}
    print("medians over {} interleaved rounds (ms):".format(rounds))
    for k, v in m.items():
        print("  {:<18} {:7.1f}".format(k, v))
    print("SPEC section 11:")
    rows = [
        ("warm ./tool vs uv run --frozen --no-dev", m["warm"] / m["uv run"], "<= 0.9x"),
        ("warm ./tool vs <env>/bin/tool", m["warm"] / m["direct"], "<= 2.0x"),
        ("first run after switching back vs warm", m["switch back"] / m["warm"], "<= 1.5x"),
        ("fresh clone vs uv sync + binary", m["fresh clone"] / m["uv sync + binary"],
         "<= 1.3x"),
    ]
    for name, ratio, target in rows:
        print("  {:<42} {:5.2f}x  (target {})".format(name, ratio, target))
    print("  {:<42} {:+5.1f} ms (target <= +3 ms)".format("warm with a 1 MB uv.lock",
                                                         m["warm 1MB"] - m["warm"]))
    print("Not in SPEC section 11, vs uv sync + binary:")
    for name in ("new uv.lock", "new project"):
        print("  fresh clone, {:<29} {:5.2f}x".format(name, m[name] / m["uv sync + binary"]))
    shutil.rmtree(base)


if __name__ == "__main__":
    main()
