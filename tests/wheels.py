"""Small wheels, written directly as zip files, for a hermetic flat package index."""

import base64
import hashlib
import importlib.metadata
import os
import zipfile

TOOL = '''\
"""{name} {version}: a console script that reports how it was run."""
import json
import os
import sys
import time

VERSION = {version!r}


def main():
    args = sys.argv[1:]
    if args[:1] == ["--cat"]:
        sys.stdout.write(sys.stdin.read())
        return 0
    if args[:1] == ["--exit"]:
        return int(args[1])
    if args[:1] == ["--late-import"]:
        # Start, say so, wait for a file to appear, then import a dependency: a process
        # running across an update of its environment.
        if args[2:3] == ["--close-fds"]:  # a daemon: the lock appenv passed on is gone
            os.closerange(3, 4096)
        print("started", flush=True)
        while not os.path.exists(args[1]):
            time.sleep(0.05)
        import {late}
        print("late", {late}.VERSION, flush=True)
        return 0
    json.dump({{"tool": {name!r}, "version": VERSION, "argv": sys.argv, "cwd": os.getcwd(),
               "basedir": os.environ.get("APPENV_BASEDIR"), "prefix": sys.prefix}},
              sys.stdout)
    sys.stdout.write("\\n")
    return 0
'''


def record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def write_wheel(directory, name, version, files, requires=(), scripts=None,
                requires_python=None, tag="py3-none-any"):
    dist = name.replace("-", "_")
    info = "{}-{}.dist-info".format(dist, version)
    metadata = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version]
    if requires_python:
        metadata.append("Requires-Python: " + requires_python)
    metadata += ["Requires-Dist: " + r for r in requires]
    contents = dict(files)
    contents[info + "/METADATA"] = "\n".join(metadata) + "\n"
    contents[info + "/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: appenv-tests\nRoot-Is-Purelib: true\nTag: {}\n".format(tag))
    if scripts:
        contents[info + "/entry_points.txt"] = "[console_scripts]\n" + "".join(
            "{} = {}\n".format(k, v) for k, v in scripts.items())
    record = []
    path = os.path.join(directory, "{}-{}-{}.whl".format(dist, version, tag))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for arcname, data in contents.items():
            data = data.encode() if isinstance(data, str) else data
            info_ = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info_.external_attr = (0o100755 if ".data/scripts/" in arcname else 0o100644) << 16
            whl.writestr(info_, data)
            record.append("{},{},{}".format(arcname, record_hash(data), len(data)))
        record.append(info + "/RECORD,,")
        whl.writestr(info + "/RECORD", "\n".join(record) + "\n")
    return path


def tool_wheel(directory, name, version, requires=(), late=None, scripts=None):
    """A package whose console scripts (SCRIPTS, else one named NAME) report how they ran."""
    module = name.replace("-", "_")
    late = late or module
    files = {module + "/__init__.py": TOOL.format(name=name, version=version, late=late)}
    return write_wheel(directory, name, version, files, requires,
                       scripts={script: module + ":main" for script in scripts or [name]})


def library_wheel(directory, name, version, requires=()):
    module = name.replace("-", "_")
    files = {module + "/__init__.py": "VERSION = {!r}\n".format(version)}
    return write_wheel(directory, name, version, files, requires)


def installed_wheel(directory, name):
    """Repack an installed pure-Python distribution (packaging, tomli) as a wheel."""
    dist = importlib.metadata.distribution(name)
    files = {}
    for entry in dist.files or ():
        parts = entry.parts
        if "__pycache__" in parts or parts[0].endswith(".dist-info") or str(entry).startswith(".."):
            continue
        files[str(entry).replace(os.sep, "/")] = entry.locate().read_bytes()
    requires = [r for r in (dist.requires or ()) if "extra ==" not in r]
    return write_wheel(directory, dist.metadata["Name"], dist.version, files, requires,
                       requires_python=dist.metadata.get("Requires-Python"))


def binary_wheel(directory, name, version, binary, tag):
    """A wheel that installs one executable as a script, as uv's own wheels do."""
    with open(binary, "rb") as f:
        data = f.read()
    dist = name.replace("-", "_")
    files = {"{}-{}.data/scripts/{}".format(dist, version, name): data}
    return write_wheel(directory, name, version, files, tag=tag)
