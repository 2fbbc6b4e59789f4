"""Charliecloud runtime: unprivileged containers (user namespaces, no daemon, no root), Debian's 0.31.

Images come from the same ``docker save`` tar as every other runtime. ``ch-convert`` cannot read
that format (its ``tar`` is one flattened root filesystem, its ``docker`` input needs the Docker
daemon), so the layers are applied here, bottom first, with OCI whiteouts, after each layer's
sha256 was checked against the config's ``rootfs.diff_ids`` and the config's sha256 against the
image ID. The result is a ch-run image directory cached under ``<cache>/<image hex>/rootfs``;
its tree digest (paths, types, modes, contents, link targets; not owners or times, which an
unprivileged unpack cannot keep) is the "converted digest" recorded next to the image ID.

The hermetic contract, and how each part is met:

* no network: ``unshare --user --map-root-user --net --mount`` gives a network namespace with only
  a down loopback (``connect`` fails with ENETUNREACH);
* read-only image: ch-run mounts the image directory read-only (no ``--write``);
* read-only inputs: read-only bind mounts made in that mount namespace before ch-run binds them;
  ch-run's nested user namespace cannot remount them (locked mount flags);
* one writable directory: ``/output``; ``/tmp`` is private (``--private-tmp``); no ``$HOME``
  and no host ``/etc/passwd`` (``--no-passwd``, the image's own, as under Docker);
* fixed environment: ``--unset-env='*'`` then the image config's ``Env`` and the spec's env
  (Docker's merge order); ch-run adds only ``CH_RUNNING``;
* limits: CPUs by affinity (``taskset`` to ceil(cpus) of the caller's cores: a core count, not
  Docker's fractional quota). Memory, pids and the /tmp size are NOT enforced: they need cgroup
  delegation, which an unprivileged user without systemd does not have. ``oom_killed`` is never
  reported.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import math
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from appliance.errors import EngineUnavailable, ImageMissing, RunFailed
from appliance.fsutil import atomic_write_json
from appliance.runtimes.base import ContainerResult, ContainerSpec

# Directories ch-run needs as mount points (ch-convert's dir_fixup) plus the recipe mounts: a
# read-only image cannot grow them at run time.
MOUNT_DIRS = ("bin", "dev", "etc", "mnt", "proc", "sys", "tmp", "usr", "input", "output", "recipe",
              *(f"mnt/{i}" for i in range(10)))
MOUNT_FILES = ("etc/hosts", "etc/resolv.conf")
CHUNK = 1 << 20


class UnsafeArchive(ImageMissing):
    """A layer member would land outside the image directory, or the archive does not match its ID."""


def _hex(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def _utcstamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- conversion: docker-archive tar -> ch-run directory ------------------------------------------
def _member_path(name: str) -> PurePosixPath | None:
    """A layer member's path relative to the root, or None for the root itself; '..' is refused."""
    parts = [p for p in PurePosixPath(name.lstrip("/")).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchive(f"layer member {name!r} climbs out of the image with '..'")
    return PurePosixPath(*parts) if parts else None


def resolve_inside(root: Path, rel: PurePosixPath, follow_last: bool = False) -> Path:
    """Resolve ``rel`` under ``root`` as the container would see it: symlinks (absolute ones
    relative to ``root``) are followed in the parents, and never lead outside ``root``."""
    parts = list(rel.parts)
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, part)
        if (parts or follow_last) and here.is_symlink():
            hops += 1
            if hops > 40:
                raise UnsafeArchive(f"too many symbolic links resolving {rel}")
            target = PurePosixPath(os.readlink(here))
            if target.is_absolute():
                done = []
            parts = [p for p in target.parts if p not in ("/", "", ".")] + parts
            continue
        done.append(part)
    return root.joinpath(*done)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        _make_writable(path)
        shutil.rmtree(path)


def _make_writable(tree: Path) -> None:
    for d, _dirs, _files in os.walk(tree):
        with contextlib.suppress(OSError):
            os.chmod(d, stat.S_IMODE(os.lstat(d).st_mode) | 0o700)


def _apply_layer(layer: tarfile.TarFile, root: Path) -> None:
    members = layer.getmembers()
    # Whiteouts hide what lower layers put there: apply them before this layer's own files.
    for m in members:
        rel = _member_path(m.name)
        if rel is None:
            continue
        parent = resolve_inside(root, rel.parent, follow_last=True)
        if rel.name == ".wh..wh..opq":
            if parent.is_dir():
                for child in list(parent.iterdir()):
                    _remove(child)
        elif rel.name.startswith(".wh."):
            victim = parent / rel.name.removeprefix(".wh.")
            if victim.is_symlink() or victim.exists():
                _remove(victim)
    dir_modes: list[tuple[Path, int]] = []
    for m in members:
        rel = _member_path(m.name)
        if rel is None or rel.name.startswith(".wh."):
            continue
        parent = resolve_inside(root, rel.parent, follow_last=True)
        parent.mkdir(parents=True, exist_ok=True)
        path = parent / rel.name
        mode = m.mode & 0o777  # no setuid/setgid/sticky: ch-run mounts nosuid anyway
        if m.isdir():
            if path.exists() and not path.is_dir() or path.is_symlink():
                _remove(path)
            path.mkdir(exist_ok=True)
            dir_modes.append((path, mode))
            continue
        if path.is_symlink() or path.exists():
            _remove(path)
        if m.issym():
            os.symlink(m.linkname, path)
        elif m.islnk():
            target = resolve_inside(root, _member_path(m.linkname) or PurePosixPath("."))
            try:
                os.link(target, path)
            except OSError:
                shutil.copy2(target, path)
        elif m.isreg():
            src = layer.extractfile(m)
            assert src is not None
            with open(path, "wb") as f:
                shutil.copyfileobj(src, f, CHUNK)
            os.chmod(path, mode)
            os.utime(path, (m.mtime, m.mtime))
        # devices and fifos are skipped: ch-run binds the host's /dev, and mknod needs privilege
    for path, mode in reversed(dir_modes):
        os.chmod(path, mode | 0o700)  # owner-writable, so the cache can be removed (as ch-convert)


def _hash_member(fileobj: IO[bytes]) -> str:
    h = hashlib.sha256()
    while chunk := fileobj.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


def read_archive_config(archive: Path) -> tuple[str, dict[str, Any], list[str]]:
    """(image ID, image config, layer member names) of a docker-archive tar, the ID verified."""
    with tarfile.open(archive) as tar:
        try:
            manifest = json.loads(tar.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
            blob = tar.extractfile(manifest["Config"]).read()  # type: ignore[union-attr]
        except (KeyError, IndexError, ValueError, AttributeError) as err:
            raise ImageMissing(f"{archive}: not a docker-archive tar (no usable manifest.json)") from err
    image_id = "sha256:" + hashlib.sha256(blob).hexdigest()
    named = PurePosixPath(manifest["Config"]).name.removesuffix(".json")
    if named != _hex(image_id):
        raise UnsafeArchive(f"{archive}: config {manifest['Config']} hashes to {image_id}")
    return image_id, json.loads(blob), list(manifest["Layers"])


def tree_digest(root: Path) -> str:
    """sha256 over (path, type, mode, content sha256 | link target) of every entry, sorted."""
    lines: list[str] = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(d) / name
            rel = p.relative_to(root).as_posix()
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode) & 0o755  # the owner-write bit is ours, not the image's
            if stat.S_ISLNK(st.st_mode):
                lines.append(f"l {rel} {os.readlink(p)}")
            elif stat.S_ISDIR(st.st_mode):
                lines.append(f"d {rel} {mode:o}")
            else:
                with open(p, "rb") as f:
                    lines.append(f"f {rel} {mode:o} {_hash_member(f)}")
    return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def convert_archive(archive: Path, dest: Path) -> dict[str, Any]:
    """Unpack ``archive`` into ``dest/rootfs`` (``dest`` must not exist); return the metadata."""
    image_id, config, layer_names = read_archive_config(archive)
    diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
    if len(diff_ids) != len(layer_names):
        raise UnsafeArchive(f"{archive}: {len(layer_names)} layers for {len(diff_ids)} diff_ids")
    root = dest / "rootfs"
    root.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for name, diff_id in zip(layer_names, diff_ids, strict=True):
            member = tar.extractfile(name)
            if member is None:
                raise UnsafeArchive(f"{archive}: layer {name} missing")
            got = "sha256:" + _hash_member(member)
            if got != diff_id:
                raise UnsafeArchive(f"{archive}: layer {name} is {got}, the config says {diff_id}")
            member.seek(0)
            with tarfile.open(fileobj=member, mode="r:") as layer:
                _apply_layer(layer, root)
    for d in MOUNT_DIRS:
        target = resolve_inside(root, PurePosixPath(d))
        if not (target.exists() or target.is_symlink()):
            target.mkdir(parents=True)
    for f in MOUNT_FILES:
        target = resolve_inside(root, PurePosixPath(f))
        if not (target.exists() or target.is_symlink()):
            target.touch()
    cfg = config.get("config") or {}
    return {"id": image_id, "diff_ids": diff_ids, "tags": [], "env": list(cfg.get("Env") or []),
            "converted_digest": tree_digest(root), "converted_by": "appliance docker-archive -> ch-run dir",
            "converted_at": _utcstamp()}


# -- the runtime ----------------------------------------------------------------------------------
@dataclass
class _Running:
    pid: int
    started: float


def _proc_tree_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        stats[int(entry)] = fields
        children[int(fields[1])].append(int(entry))
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    cpu, rss, todo = 0.0, 0, [pid]
    while todo:
        p = todo.pop()
        f = stats.get(p)
        if f is not None:
            cpu += (int(f[11]) + int(f[12])) / tick
            rss += int(f[21]) * page
        todo.extend(children.get(p, []))
    return cpu, rss


class CharliecloudRuntime:
    name = "charliecloud"

    def __init__(self, cache_dir: Path, tars_dir: Path | None = None, ch_run: str | None = None):
        found = ch_run or shutil.which("ch-run")
        if not found:
            raise EngineUnavailable("charliecloud is not installed (apt-get install charliecloud)")
        if not shutil.which("unshare"):
            raise EngineUnavailable("unshare (util-linux) is needed for the network namespace")
        self.ch_run = found
        self.cache_dir = cache_dir
        self.tars_dir = tars_dir
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()

    def _env(self) -> dict[str, str]:
        """ch-run refuses to start without $USER; set it from the password database."""
        env = dict(os.environ)
        env.setdefault("USER", pwd.getpwuid(os.getuid()).pw_name)
        return env

    def version(self) -> dict[str, str]:
        proc = subprocess.run([self.ch_run, "--version"], capture_output=True, text=True, env=self._env())
        return {"runtime": "charliecloud", "engine": (proc.stdout + proc.stderr).strip() or "?",
                "unprivileged": str(os.geteuid() != 0).lower()}

    # -- images ---------------------------------------------------------------------------------
    def _dir(self, image_id: str) -> Path:
        return self.cache_dir / _hex(image_id)

    def _meta(self, image_id: str) -> dict[str, Any] | None:
        f = self._dir(image_id) / "image.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def _find_tar(self, image_id: str) -> Path | None:
        if self.tars_dir is None or not self.tars_dir.is_dir():
            return None
        for tar in sorted(self.tars_dir.glob("*.tar")):
            with contextlib.suppress(ImageMissing, tarfile.TarError, OSError):
                if read_archive_config(tar)[0] == image_id:
                    return tar
        return None

    def has_image(self, image_id: str) -> bool:
        if self._meta(image_id) is not None:
            return True
        tar = self._find_tar(image_id)
        if tar is None:
            return False
        self.load_image(tar)
        return self._meta(image_id) is not None

    def image_info(self, image_id: str) -> dict[str, object]:
        meta = self._meta(image_id)
        if meta is None:
            raise ImageMissing(f"image {image_id} is not in the charliecloud cache {self.cache_dir}")
        return {k: meta[k] for k in ("id", "diff_ids", "tags", "converted_digest")}

    def load_image(self, src: Path) -> list[str]:
        """Convert a docker-archive tar into the cache (once per image ID); keep the tar beside it."""
        image_id, _config, _layers = read_archive_config(src)
        final = self._dir(image_id)
        if (final / "image.json").is_file():
            return [image_id]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".tmp-{_hex(image_id)[:12]}-{uuid.uuid4().hex[:8]}"
        try:
            meta = convert_archive(src, tmp)
            try:
                os.link(src, tmp / "image.tar")
            except OSError:
                shutil.copyfile(src, tmp / "image.tar")
            atomic_write_json(tmp / "image.json", meta)
            try:
                tmp.rename(final)
            except OSError:  # another process converted it first: keep theirs
                if not (final / "image.json").is_file():
                    raise
        finally:
            if tmp.exists():
                _make_writable(tmp)
                shutil.rmtree(tmp, ignore_errors=True)
        return [image_id]

    def save_image(self, image_id: str, dest: Path) -> None:
        src = self._dir(image_id) / "image.tar"
        if not src.is_file():
            raise ImageMissing(f"image {image_id} is not in the charliecloud cache {self.cache_dir}")
        from appliance.fsutil import atomic_open

        with open(src, "rb") as f, atomic_open(dest, "wb") as out:
            shutil.copyfileobj(f, out, CHUNK)

    def remove_image(self, image_id: str) -> None:
        d = self._dir(image_id)
        if d.exists():
            _make_writable(d)
            shutil.rmtree(d, ignore_errors=True)

    # -- run ------------------------------------------------------------------------------------
    def command(self, spec: ContainerSpec) -> list[str]:
        """The full command line: unshare (net + mount namespaces, read-only binds) then ch-run."""
        meta = self._meta(spec.image_id)
        if meta is None:
            raise ImageMissing(
                f"image {spec.image_id} is not in the charliecloud cache {self.cache_dir}; put its "
                "`appliance images save` tar in the image_tars directory (APPLIANCE_IMAGE_TARS) or "
                "`appliance import BUNDLE --runtime charliecloud`")
        root = self._dir(spec.image_id) / "rootfs"
        uid, _, gid = spec.user.partition(":")
        env = dict(e.split("=", 1) for e in meta.get("env", []) if "=" in e)
        env.update(spec.env)
        ch = [self.ch_run, "--no-passwd", "--private-tmp", "--unset-env=*",
              "--uid", uid, "--gid", gid or uid, "--cd", spec.workdir]
        ch.append("--env-no-expand")
        for k, v in env.items():
            ch.append(f"--set-env={k}={v}")
        binds = []
        for m in spec.mounts:
            ch += ["-b", f"{m.source}:{m.target}"]
            if m.read_only:
                q = shlex.quote(str(m.source))
                binds.append(f"mount --bind {q} {q} && mount -o remount,bind,ro {q}")
        ch += [str(root), "--", *spec.command]
        script = " && ".join([*binds, 'exec "$@"'])
        cmd = ["unshare", "--user", "--map-root-user", "--net", "--mount", "--",
               "/bin/sh", "-c", script, "appliance-ch"]
        if os.geteuid() == 0:  # root runs the container as the spec's user, like an unprivileged caller
            cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups", "--", *cmd]
        if spec.cpus:
            allowed = sorted(os.sched_getaffinity(0))
            n = max(1, min(len(allowed), math.ceil(spec.cpus)))
            cmd = ["taskset", "-c", ",".join(map(str, allowed[:n])), *cmd]
        return cmd + ch

    def run(self, spec: ContainerSpec, on_log: Callable[[str], None]) -> ContainerResult:
        cmd = self.command(spec)
        if spec.network != "none":
            raise RunFailed(f"charliecloud runs have no network; network {spec.network!r} asked")
        tail: collections.deque[str] = collections.deque(maxlen=50)
        started = _utcstamp()
        key = spec.labels.get("org.appliance.run", "")
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=self._env(), stdin=subprocess.DEVNULL) as p:
            with self._lock:
                self._running[key] = _Running(p.pid, time.monotonic())
            try:
                assert p.stdout is not None
                for line in p.stdout:
                    tail.append(line.rstrip("\n"))
                    on_log(tail[-1])
                code = p.wait()
            finally:
                with self._lock:
                    self._running.pop(key, None)
        errors = [t for t in tail if t.startswith(("unshare:", "mount:"))
                  or (t.startswith("ch-run[") and ": error: " in t)]
        if code != 0 and errors:
            raise RunFailed(f"charliecloud could not run {spec.command[0]!r}: {errors[-1]}")
        return ContainerResult(exit_code=code, oom_killed=False, started_at=started,
                               finished_at=_utcstamp(), log_tail=list(tail))

    def usage(self, run_id: str) -> dict[str, float] | None:
        """CPU seconds and resident bytes of a running container (for the heartbeat)."""
        with self._lock:
            running = self._running.get(run_id)
        if running is None:
            return None
        cpu, rss = _proc_tree_usage(running.pid)
        return {"cpu_seconds": cpu, "memory_bytes": float(rss)}

    def running(self) -> Iterator[str]:
        with self._lock:
            yield from list(self._running)


ROOT_CACHE = Path("/var/cache/appliance/charliecloud")


def default_cache(settings: Any) -> Path:
    """Per user in the image store; for root a world-traversable place, since root runs the
    container as ``run_uid`` (nobody), which must reach the image (``/root`` is 0700)."""
    if os.geteuid() == 0 and Path(settings.image_store).is_relative_to(Path.home()):
        return ROOT_CACHE
    return Path(settings.image_store) / "charliecloud"


def create(settings: Any = None) -> CharliecloudRuntime:
    """Registry entry: the cache lives in the machine's image store (per user when not root)."""
    if settings is None:
        from appliance.config import Settings

        settings = Settings.load()
    return CharliecloudRuntime(default_cache(settings), getattr(settings, "image_tars", None))
