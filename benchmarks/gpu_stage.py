"""Stage the GPU training run (benchmarks/gpu_train.sh) for one call of the device tool, and unpack it there.

A device call carries the checkout's working tree (tracked and untracked-not-ignored files) plus the
ignored paths named in ``carry``, 64 MiB in all. The tracked tree alone is close to that (the zoo's
weights, test fixtures, the AE Frechet autoencoders) and the data is not in it, so for the call the
checkout holds only what the run reads, and the rest travels compressed in one ignored folder:

    python benchmarks/gpu_stage.py stage CHECKOUT     # here, before the call: builds CHECKOUT/.gpu-carry
        # (the spikingjelly and loguru wheels, FashionMNIST and MNIST as xz'd idx files, the zoo
        # weights the runs start from), moves every file the run does not read into the ignored
        # CHECKOUT/.gpu-aside, checks the 64 MiB limit (refuses, moving nothing, when over) and
        # prints the device call to make
    python benchmarks/gpu_stage.py restore CHECKOUT   # here, after the call: puts every file back
    python benchmarks/gpu_stage.py unpack CARRY --repo REPO --data DIR   # there (gpu_train.sh does it)
    python benchmarks/gpu_stage.py check-out OUT      # what OUT holds obeys the limits of files back

Only the first ``--test-images`` test images travel (1000: the zoo recipe's limit_test); the run's
``--limit-test`` is set to that number by gpu_train.sh. Everything unpacked is checked against the
SHA-256 of what was packed. ``stage`` refuses while ``fsvae_sj.train``/``evaluate`` processes run
(not stopped): the autoencoders go aside and their next evaluation would fail. Building the carry
folder takes a few CPU-minutes (xz -9e of ~100 MB); a second ``stage`` reuses what is already packed
when its source has not changed.
"""
from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

CARRY, ASIDE = ".gpu-carry", ".gpu-aside"
MODELS = ("fashion-mnist", "mnist")           # the zoo entries trained, both at once
WHEELS = ("spikingjelly", "loguru")          # not on the device's image (loguru: spikingjelly 2 imports it)
# The files the run reads, as glob patterns over repository paths; every other file goes aside.
# fsvae_sj/assets/afd/*.pth (the AE Frechet autoencoders) stays behind: the run measures no AE Frechet.
KEEP = ("fsvae_sj/*", "zoo/*.json", "benchmarks/gpu_train.sh", "benchmarks/gpu_stage.py", "setup.cfg",
        "pyproject.toml", "requirements.txt", ".gitignore")
LEAVE = ("fsvae_sj/assets/afd/*.pth",)
# The device tool's limits (/work/.library/device/README.md).
TREE_LIMIT = 64 << 20
BACK_FILES, BACK_FILE_SIZE, BACK_TOTAL, BACK_DEPTH = 8, 16 << 20, 64 << 20, 3   # OUT/a/b/file at most
BACK_NAME = re.compile(r"[A-Za-z0-9._-]+")
IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
XZ = 9 | lzma.PRESET_EXTREME


class StageError(Exception):
    """A staging that cannot go on; the message says what to do."""


# ---- codecs: what is packed is unpacked byte for byte (SHA-256 checked) ----

def shuffle4(raw: bytes) -> bytes:
    """float32 weights compress better as four planes of their bytes (sign and exponent apart)."""
    pad = (-len(raw)) % 4
    return np.frombuffer(raw + b"\0" * pad, np.uint8).reshape(-1, 4).T.tobytes()


def unshuffle4(planes: bytes, size: int) -> bytes:
    return np.frombuffer(planes, np.uint8).reshape(4, -1).T.tobytes()[:size]


def pack(raw: bytes, codec: str) -> bytes:
    return lzma.compress(shuffle4(raw) if codec == "shuffle4+xz" else raw, preset=XZ)


def unpack_bytes(packed: bytes, codec: str, size: int) -> bytes:
    raw = lzma.decompress(packed)
    return unshuffle4(raw, size) if codec == "shuffle4+xz" else raw


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes (the format fsvae_sj.datasets reads)."""
    a = np.ascontiguousarray(array, np.uint8)
    return bytes([0, 0, 0x08, a.ndim]) + np.asarray(a.shape, ">u4").tobytes() + a.tobytes()


def sha256(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


# ---- sizes ----

def git(checkout: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(checkout), *args], check=True, capture_output=True, text=True).stdout


def travelling(checkout: Path) -> list[str]:
    """Repository paths of the files a device call copies (tracked and untracked-not-ignored, present)."""
    out = git(checkout, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    paths = sorted({p for p in out.split("\0") if p})
    return [p for p in paths if (checkout / p).is_file() or (checkout / p).is_symlink()]


def folder_size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def tree_size(checkout: Path, paths: list[str]) -> int:
    return sum((checkout / p).lstat().st_size for p in paths)


def mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB ({n / 2**20:.2f} MiB)"


def kept(path: str) -> bool:
    return any(fnmatch(path, k) for k in KEEP) and not any(fnmatch(path, x) for x in LEAVE)


# ---- stage ----

def _library(checkout: Path):
    """The checkout's own fsvae_sj (its data sources and zoo registry)."""
    sys.path.insert(0, str(checkout))
    import fsvae_sj.datasets as datasets
    from fsvae_sj.files import atomic_write_bytes, atomic_write_json
    return datasets, atomic_write_bytes, atomic_write_json


def _wheels(carry: Path) -> list[str]:
    """The wheels of the versions this Python runs (the ones the project tests with), one of each."""
    from importlib.metadata import version
    folder = carry / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name in WHEELS:
        want = f"{name}-{version(name)}-"
        for old in folder.glob(f"{name}-*.whl"):
            if not old.name.startswith(want):
                old.unlink()          # two versions of one package stop the whole install there
        have = sorted(folder.glob(want + "*.whl"))
        if not have:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                       "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                       "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", tmp,
                       f"{name}=={version(name)}"]
                if subprocess.run(cmd).returncode != 0:
                    raise StageError(f"pip could not download {name}=={version(name)} (needs the package "
                                     f"registry); put its wheel in {folder} by hand")
                for w in Path(tmp).glob("*.whl"):
                    shutil.move(str(w), folder / w.name)
            have = sorted(folder.glob(want + "*.whl"))
        names += [h.name for h in have]
    return names


def _entry(carry: Path, old: dict, name: str, raw: bytes, codec: str, target: str, write) -> dict:
    """Pack ``raw`` into carry/name unless the manifest's entry already holds exactly it."""
    digest = sha256(raw)
    prev = old.get(name)
    path = carry / name
    if prev and prev["sha256"] == digest and prev["codec"] == codec and path.is_file() \
            and path.stat().st_size == prev["packed_size"]:
        print(f"  {name}: unchanged, kept ({path.stat().st_size:,} bytes)")
        return prev
    t = time.time()
    packed = pack(raw, codec)
    if unpack_bytes(packed, codec, len(raw)) != raw:
        raise StageError(f"{name}: the packed bytes do not unpack to the original")
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, packed)
    print(f"  {name}: {len(raw):,} -> {len(packed):,} bytes ({time.time() - t:.0f} s)")
    return {"codec": codec, "target": target, "sha256": digest, "size": len(raw), "packed_size": len(packed)}


def build_carry(checkout: Path, test_images: int) -> dict:
    datasets, write, write_json = _library(checkout)
    carry = checkout / CARRY
    manifest_path = carry / "manifest.json"
    old = json.loads(manifest_path.read_text())["files"] if manifest_path.is_file() else {}
    files, models = {}, {}
    for model in MODELS:
        entry = json.loads((checkout / "zoo" / f"{model}.json").read_text())
        weights = checkout / "zoo" / entry["file_name"]
        if not weights.is_file():
            raise StageError(f"{weights} is missing (a staging not restored? run: gpu_stage.py restore {checkout})")
        files[f"zoo/{entry['file_name']}.xz"] = _entry(carry, old, f"zoo/{entry['file_name']}.xz",
                                                       weights.read_bytes(), "shuffle4+xz",
                                                       f"repo/zoo/{entry['file_name']}", write)
        models[model] = datasets.canonical(entry["dataset"])
    for name in sorted(set(models.values())):
        tv_dir = datasets.DATASETS[name].torchvision_dir
        for split in ("train", "test"):
            x, y, source = datasets.load_raw(name, split)   # the sources the lead's runs read
            if split == "test":
                x, y = x[:test_images], y[:test_images]
            print(f"  {name} {split}: {len(x)} images from {source}")
            for stem, array in zip(IDX[split], (x, y)):
                key = f"data/{name}/{stem}.xz"
                files[key] = _entry(carry, old, key, idx_bytes(array), "xz", f"data/{tv_dir}/raw/{stem}", write)
    wheels = _wheels(carry)
    for stale in [p for p in carry.rglob("*") if p.is_file() and p.relative_to(carry).as_posix() not in files
                  and p.parent.name != "wheels" and p.name != "manifest.json"]:
        stale.unlink()
    manifest = {"format": 1, "models": models, "test_images": test_images, "wheels": wheels, "files": files}
    write_json(manifest_path, manifest)
    return manifest


def running_evaluators() -> list[int]:
    """PIDs of running (not stopped) ``fsvae_sj.train`` / ``fsvae_sj.evaluate`` processes but this one.
    They read the AE Frechet autoencoders (LEAVE) at each evaluation: while those are aside, the next one
    fails with FileNotFoundError and ends the run (seen 2026-12-04). Linux /proc; elsewhere none found."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:   # gone meanwhile, or not ours to read
            continue
        if int(proc.name) != os.getpid() and state not in "Tt" and \
                any(a in (b"fsvae_sj.train", b"fsvae_sj.evaluate") for a in argv):
            pids.append(int(proc.name))
    return sorted(pids)


def stage(checkout: Path, test_images: int, allowance: int, running_ok: bool = False) -> None:
    checkout = checkout.resolve()
    pids = running_evaluators()
    if pids and not running_ok:
        ids = " ".join(map(str, pids))
        raise StageError(f"training or evaluation processes are running ({ids}): staging moves the AE Frechet "
                         f"autoencoders aside and their next evaluation would fail. Pause them (kill -STOP {ids}; "
                         f"kill -CONT {ids} after restore), or give --running-ok if they never evaluate")
    aside = checkout / ASIDE
    if aside.exists() and any(aside.rglob("*")):
        raise StageError(f"{aside} holds files of an earlier staging: run gpu_stage.py restore {checkout} first")
    for folder in (CARRY, ASIDE):
        if subprocess.run(["git", "-C", str(checkout), "check-ignore", "-q", f"{folder}/x"]).returncode != 0:
            raise StageError(f"{checkout / folder} is not ignored by git there: add /{folder}/ to its .gitignore")
    print(f"building {checkout / CARRY}")
    manifest = build_carry(checkout, test_images)
    paths = travelling(checkout)
    away = [p for p in paths if not kept(p)]
    stay = [p for p in paths if kept(p)]
    carry_size = folder_size(checkout / CARRY)
    total = tree_size(checkout, stay) + carry_size
    print(f"tree now {mb(tree_size(checkout, paths))}; after moving {len(away)} files aside "
          f"{mb(tree_size(checkout, stay))}; carry {mb(carry_size)}; total {mb(total)} of {mb(TREE_LIMIT)}")
    if total > TREE_LIMIT:
        raise StageError(f"what would travel is {mb(total)}, over the device's {mb(TREE_LIMIT)}; nothing was moved. "
                         f"Carry less (fewer --test-images) or keep less in the tree (KEEP in {__file__})")
    for p in away:
        dest = aside / p
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(checkout / p, dest)
    measured = tree_size(checkout, travelling(checkout)) + folder_size(checkout / CARRY)
    if measured > TREE_LIMIT:
        restore(checkout)
        raise StageError(f"measured after moving: {mb(measured)}, over {mb(TREE_LIMIT)}; everything was put back")
    print(f"staged: {len(away)} files in {aside} (put back with: python benchmarks/gpu_stage.py restore {checkout}); "
          f"travelling {mb(measured)}, {mb(TREE_LIMIT - measured)} to spare")
    print(f"models {manifest['models']}, {test_images} test images each")
    call = {"command": f"bash benchmarks/gpu_train.sh {allowance}", "carry": [CARRY], "timeout_s": allowance + 25}
    print("device call:\n  run " + json.dumps(call))
    print(f"then give_back, then: python benchmarks/gpu_stage.py restore {checkout}")


def restore(checkout: Path) -> None:
    checkout = checkout.resolve()
    aside = checkout / ASIDE
    if not aside.is_dir():
        print(f"nothing to restore: no {aside}")
        return
    back, kept_aside = 0, []
    for p in sorted(q for q in aside.rglob("*") if q.is_file() or q.is_symlink()):
        dest = checkout / p.relative_to(aside)
        if dest.exists() or dest.is_symlink():
            if dest.is_file() and not dest.is_symlink() and dest.read_bytes() == p.read_bytes():
                p.unlink()              # the same file again (an unpack into this checkout)
            else:
                kept_aside.append(str(p))   # never overwrite a file made since the staging
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(p, dest)
        back += 1
    if kept_aside:
        raise StageError(f"put back {back} files; {len(kept_aside)} stay in {aside} since a file of that name exists "
                         f"again in the checkout: {', '.join(kept_aside[:5])}{' ...' if len(kept_aside) > 5 else ''}")
    shutil.rmtree(aside)
    print(f"put back {back} files; {aside} removed ({checkout / CARRY} kept for the next staging)")


# ---- there ----

def unpack(carry: Path, repo: Path, data: Path, env_file: Path | None) -> None:
    """Write the packed files (checked against their SHA-256): zoo weights under ``repo``, data under ``data``."""
    sys.path.insert(0, str(repo))
    from fsvae_sj.files import atomic_write_bytes
    manifest = json.loads((carry / "manifest.json").read_text())
    t = time.time()
    for name, e in manifest["files"].items():
        raw = unpack_bytes((carry / name).read_bytes(), e["codec"], e["size"])
        if sha256(raw) != e["sha256"]:
            raise StageError(f"{carry / name} unpacked to other bytes than were packed; stage again")
        where, _, rest = e["target"].partition("/")
        dest = (repo if where == "repo" else data) / rest
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, raw)
    print(f"unpacked {len(manifest['files'])} files in {time.time() - t:.1f} s: models {manifest['models']}, "
          f"{manifest['test_images']} test images")
    if env_file:
        env_file.write_text(f"MODELS='{' '.join(manifest['models'])}'\nTEST_IMAGES={manifest['test_images']}\n")


def check_out(out: Path) -> list[str]:
    """What breaks the limits of files back from $OUT (empty: nothing)."""
    problems, total, files = [], 0, []
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if not all(BACK_NAME.fullmatch(part) for part in rel.parts):
            problems.append(f"{rel}: a name with characters other than letters, digits, '.', '_', '-'")
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            problems.append(f"{rel}: not a plain file or folder")
        elif p.is_file():
            size = p.stat().st_size
            files.append(rel)
            total += size
            print(f"  {size:>12,}  {rel}")
            if len(rel.parts) > BACK_DEPTH:
                problems.append(f"{rel}: more than {BACK_DEPTH - 1} folders down")
            if size > BACK_FILE_SIZE:
                problems.append(f"{rel}: {mb(size)}, over {mb(BACK_FILE_SIZE)}")
    print(f"  {len(files)} files, {mb(total)}")
    if len(files) > BACK_FILES:
        problems.append(f"{len(files)} files, over {BACK_FILES}")
    if total > BACK_TOTAL:
        problems.append(f"{mb(total)} in all, over {mb(BACK_TOTAL)}")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stage", help="build CHECKOUT/.gpu-carry, move the rest aside, print the device call")
    s.add_argument("checkout", type=Path)
    s.add_argument("--test-images", type=int, default=1000, help="test images carried per dataset (default 1000)")
    s.add_argument("--allowance", type=int, default=575,
                   help="seconds the device command may take, passed to gpu_train.sh; the call's timeout_s is "
                        "25 more (default 575)")
    s.add_argument("--running-ok", action="store_true",
                   help="stage although fsvae_sj.train/evaluate processes run (their evaluations fail meanwhile)")
    r = sub.add_parser("restore", help="put back the files a staging moved aside")
    r.add_argument("checkout", type=Path)
    u = sub.add_parser("unpack", help="on the device: zoo weights into REPO, data into DIR")
    u.add_argument("carry", type=Path)
    u.add_argument("--repo", type=Path, required=True)
    u.add_argument("--data", type=Path, required=True)
    u.add_argument("--env", type=Path, help="write MODELS and TEST_IMAGES here as shell variables")
    c = sub.add_parser("check-out", help="does OUT obey the limits of files back?")
    c.add_argument("out", type=Path)
    a = p.parse_args(argv)
    try:
        if a.cmd == "stage":
            if a.allowance + 25 > 600:
                raise StageError("--allowance: a device call runs at most 600 s; give at most 575")
            stage(a.checkout, a.test_images, a.allowance, a.running_ok)
        elif a.cmd == "restore":
            restore(a.checkout)
        elif a.cmd == "unpack":
            unpack(a.carry, a.repo, a.data, a.env)
        else:
            problems = check_out(a.out)
            for line in problems:
                print(f"over the limits: {line}", file=sys.stderr)
            return 1 if problems else 0
    except (StageError, subprocess.CalledProcessError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
