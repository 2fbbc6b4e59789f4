"""Write a byte-reproducible tar of Python packages: same sources, same bytes.

Run by the appliance role on the controller: source_tar.py OUT SRC_DIR PACKAGE...
Prints the sha256 of the tar. Entries are sorted, mtimes/owners fixed, caches left out.
"""

import hashlib
import os
import sys
import tarfile


def main() -> int:
    out, src, packages = sys.argv[1], sys.argv[2], sys.argv[3:]
    tmp = out + ".tmp"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for pkg in packages:
            paths = []
            for root, dirs, files in os.walk(os.path.join(src, pkg)):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                paths += [os.path.join(root, f) for f in files if not f.endswith((".pyc", ".pyo"))]
            for path in sorted(paths):
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, src))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
                info.mode = 0o644
                info.pax_headers = {}
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
    os.replace(tmp, out)
    with open(out, "rb") as fh:
        print(hashlib.sha256(fh.read()).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
