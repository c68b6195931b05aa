"""Benchmark: what each store operation costs per video as the store grows (1,000 to 100,000 videos).

A synthetic store of 28 frames per video (3 x 14 x 14 attention maps and a score per
frame), with and without 2048-value frame embeddings (ResMem's size, stored as float16),
is written as ``amnetvid extract`` writes it: the frame model registered once, then one
write per ``--flush-every`` batch of completed videos (default 16, the extractor's),
through the extractor's own ``Extractor.flush`` (so a per-flush query that the extractor
makes, as it does with ``--embeddings``, is counted), and one labels import per size. The
same store grows from one size to the next; at each size it prints, per video:

- **write**: the mean cost of a flush over the whole store, and over the last tenth of
  it (the marginal cost: what one more video costs at that size);
- **read_arrays** of 4 frames (picked of the 28) of every video, ids shuffled:
  *first-ever* (a fresh process, no array cache file: decodes the Parquet parts and
  writes the cache file), *cold* (a fresh process, the cache file there),
  *no cache* (a fresh process with ``AMNETVID_CACHE_BYTES=0``) and *warm*
  (a second read in one process). Imports are not counted;
- **SQL**: each ```sql block of ``store/README.md`` through ``FeatureStore.sql`` (the
  embeddings example only on the store with embeddings), in a new ``FeatureStore``;
- **info**: ``FeatureStore(path).info()`` in a new ``FeatureStore``;
- **verify**: ``FeatureStore(path).verify()`` in a fresh process (a process remembers
  the part files it found whole);
- **compact**: ``FeatureStore(path).compact()`` on a copy of the store (the store keeps
  growing uncompacted): hard-linked on disk, copied object by object on the server (S3's
  CopyObject, not timed) with ``--s3``; and the part files and bytes after it;
- the **part files** and **bytes on disk** of the store (``info()``; the array cache
  not counted).

At the end, per operation, the ratio of the per-video cost at the largest size to that at
the smallest (goal: within 1.5x). Each figure is the best of ``--repeat`` runs (one run at
50,000 videos and more); the CPU capability, the disk and the load average are printed.

The stores are written under ``--root`` (default: a temporary folder under the system's,
removed at the end unless ``--keep``). With ``--s3`` they are written to ``s3://bench/`` on a
SeaweedFS server (``weed``, the ``s3`` extra) that the bench starts on localhost with
:class:`amnetvid_sk.testing.s3_server.S3Server`, the one the S3 tests use, its data in that
temporary folder, and stops at the end; the array cache, local for an S3 store, goes to
``AMNETVID_CACHE_DIR`` set to a folder there too (removed before each *first-ever* read). The
same operations are measured, through the S3 API over loopback: a localhost server is not a
cloud bucket (a request to one typically waits tens of milliseconds for its first byte, far
longer than over loopback, and its bandwidth is the network's), and on a small machine the
server's own CPU time (it runs beside the bench) is counted in every figure.

Run from the repository root::

    python bench/bench_store_scale.py --sizes 1000          # about a minute on 2 cores
    python bench/bench_store_scale.py --sizes 1000,10000    # about 7 minutes on 2 cores
    python bench/bench_store_scale.py --embeddings off      # 1,000 to 100,000 videos: 10 minutes, 12 GB
    python bench/bench_store_scale.py                       # and with embeddings: 45 minutes, 33 GB at most
    python bench/bench_store_scale.py --s3 --sizes 1000,10000 --embeddings off   # on S3: about 9 minutes on 2 cores

At 100,000 videos the store without embeddings is 5.8 GB (16 GB with them), and its compacted
copy as much again while ``compact`` is measured.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

try:
    import amnetvid_sk
except ImportError:  # run from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import amnetvid_sk

import torch

from amnetvid_sk.errors import StoreError
from amnetvid_sk.extraction.local import ExtractionJob, Extractor, _PendingVideo
from amnetvid_sk.store import FeatureStore, location
from amnetvid_sk.testing.s3_server import S3Server, weed_binary
from ceiling import load_average
from timing import COLD_READ, best_of, fresh_process

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "store" / "README.md"
SHAPE = (3, 14, 14)
FRAMES = 28  # stored per video, as `amnetvid extract` stores by default
READ_FRAMES = 4  # read per video, as the AMNetVid recipe reads
EMBEDDING_DIM = 2048  # ResMem's
SAMPLING = f"frames={FRAMES}"
S3_BUCKET = "bench"  # with --s3
POOL = 64  # distinct synthetic videos, cycled (generating 100,000 would cost more than writing them)

# verify in a fresh process: argv = store.
VERIFY = """
import sys, time
from amnetvid_sk.store import FeatureStore
fs = FeatureStore(sys.argv[1])
start = time.perf_counter()
report = fs.verify()
print(time.perf_counter() - start, int(report.ok), report.checked)
"""


class FakeModel:
    """What ``Extractor`` asks of a frame model when it writes (no forward pass is run)."""

    name = "synthetic"
    maps = "attention"
    map_shape = SHAPE
    batch_size = 32

    def __init__(self, embedding_dim: int):
        self.embedding_dim = embedding_dim
        self.fingerprint = (f"synthetic.w-000000000000.pre-none.maps-3x14x14.emb-{embedding_dim}.fp32"
                            if embedding_dim else "synthetic.w-000000000000.pre-none.maps-3x14x14.fp32")
        self.config = {"name": "synthetic", "embedding_dim": embedding_dim}


def smooth_maps(rng, n: int) -> np.ndarray:
    """Attention-like maps: softmax of smooth random fields (4 x 4 noise, bicubic-upsampled)."""
    low = torch.from_numpy(rng.normal(size=(n, 3, 4, 4)).astype(np.float32))
    field = torch.nn.functional.interpolate(low, size=SHAPE[1:], mode="bicubic", align_corners=False) * 2.0
    return torch.softmax(field.reshape(n, 3, -1), dim=-1).reshape(n, *SHAPE).numpy()


class Writer:
    """Writes synthetic videos into a store as the extractor does: ``Extractor.flush`` per batch."""

    def __init__(self, store: str, embedding_dim: int, flush_every: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.store, self.flush_every, self.n = store, flush_every, 0
        self.model = FakeModel(embedding_dim)
        self.maps = smooth_maps(rng, POOL * FRAMES).reshape(POOL, FRAMES, *SHAPE)
        self.scores = rng.random((POOL, FRAMES), dtype=np.float32)
        self.embeddings = (rng.normal(size=(POOL, FRAMES, embedding_dim)).astype(np.float32)
                           if embedding_dim else None)
        self.index = np.linspace(0, 209, FRAMES).round().astype(np.int64)
        job = ExtractionJob(store=store, sampling=SAMPLING, n_frames=FRAMES, flush_every=flush_every,
                            embeddings=bool(embedding_dim))
        fs = FeatureStore(store, create=True)
        # once per `amnetvid extract` run, as extraction.extract does
        fs.write_model(self.model.fingerprint, self.model.name, self.model.config, SHAPE,
                       embedding_dim=embedding_dim)
        self.extractor = Extractor(self.model, job)
        self.flush_seconds: list[tuple[int, float]] = []  # (videos in the flush, seconds)

    def pending(self, i: int) -> _PendingVideo:
        vid, k = f"video{i:07d}", i % POOL
        info = SimpleNamespace(duration=7.0, fps=30.0, frame_count=210, width=640, height=360)
        sampled = SimpleNamespace(indices=self.index, timestamps=self.index / 30.0, short=False, info=info,
                                  frames=None)
        p = _PendingVideo(Path(f"/data/{vid}.webm"), vid, (f"/data/{vid}.webm", 1000 + i, 0.0), sampled, SHAPE,
                          self.model.embedding_dim)
        p.scores[:], p.maps[:] = self.scores[k], self.maps[k]
        if p.embeddings is not None:
            p.embeddings[:] = self.embeddings[k]
        p.done = FRAMES
        return p

    def grow(self, n: int) -> None:
        """Add videos until the store holds ``n``, one flush per ``flush_every``."""
        while self.n < n:
            count = min(self.flush_every, n - self.n)
            self.extractor._completed.extend(self.pending(self.n + i) for i in range(count))
            start = time.perf_counter()
            self.extractor.flush()
            self.flush_seconds.append((count, time.perf_counter() - start))
            self.n += count

    def per_video(self, last_fraction: float = 1.0) -> float:
        """Seconds per video of the flushes that wrote the last ``last_fraction`` of the videos."""
        want, videos, seconds = max(1, int(self.n * last_fraction)), 0, 0.0
        for count, s in reversed(self.flush_seconds):
            if videos >= want:
                break
            videos, seconds = videos + count, seconds + s
        return seconds / max(videos, 1)


# each query of the README named by words only it has (the first match wins)
_QUERY_NAMES = [
    (("embedding", "list_cosine_similarity"), "embeddings: nearest by cosine"),
    (("rank_p",), "predictions: Spearman per fold"),
    (("unnest(attention)",), "attention entropy (unnest)"),
    (("list_slice",), "entropy of map 0 (lists)"),
    (("corr(a, b)",), "Spearman of mean score"),
    (("JOIN frames",), "mean score with labels"),
    (("LIMIT 10",), "ten most memorable"),
    (("FROM failures",), "failures"),
    (("count(*) AS n_frames",), "mean score per video"),
]


def readme_sql() -> dict[str, str]:
    """The ```sql blocks of store/README.md, named by their first words (or first comment)."""
    out = {}
    for block in re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.DOTALL):
        words = " ".join(block.split())
        name = next((name for markers, name in _QUERY_NAMES if all(m in words for m in markers)), words[:30])
        out[name] = block
    return out


def disk(path: Path) -> str:
    """The device and file system under ``path``, and whether it spins (Linux)."""
    try:
        out = subprocess.run(["df", "--output=source,fstype,size", str(path)], capture_output=True, text=True,
                             check=True).stdout.split("\n")[1].split()
        dev = Path(out[0]).name
        base = re.sub(r"\d+$", "", dev) if not dev.startswith("nvme") else re.sub(r"p\d+$", "", dev)
        rot = Path(f"/sys/block/{base}/queue/rotational")
        kind = ("rotational" if rot.read_text().strip() == "1" else "non-rotational") if rot.exists() else "?"
        return f"{out[0]} ({out[1]}, {out[2]}, {kind})"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def copy_store(src: str, dst: str) -> None:
    """A copy of the store ``src`` at ``dst``: hard links for a local store, a server-side copy of
    each object for an S3 one (neither holds the array cache)."""
    if not location.is_remote(src):
        shutil.copytree(src, dst, copy_function=os.link, ignore=shutil.ignore_patterns(location.CACHE_DIR))
        return
    import pyarrow.fs as pafs

    fs, key = location._split(src)
    dst_key = location._split(dst)[1]
    for info in fs.get_file_info(pafs.FileSelector(key, recursive=True)):
        if info.type == pafs.FileType.File:
            fs.copy_file(info.path, dst_key + info.path[len(key):])


def remove_store(path: str) -> None:
    """Delete a store (a folder, or every object under an S3 prefix) and its array cache."""
    shutil.rmtree(location.cache_folder(path), ignore_errors=True)
    if not location.is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    fs, key = location._split(path)
    try:
        fs.delete_dir(key)
    except OSError:
        pass


def measure(path: str, n: int, repeat: int, embeddings: bool, queries: dict[str, str], scratch: Path) -> dict:
    """Seconds of each operation on the store at ``path`` (of ``n`` videos; a folder or an S3 URL),
    and its parts and bytes. ``scratch``: a local folder for the ids file."""
    out = {}
    fs = FeatureStore(path)
    ids = np.array([f"video{i:07d}" for i in np.random.default_rng(n).permutation(n)], dtype=object)
    ids_file = scratch / f"{path.rstrip('/').rsplit('/', 1)[-1]}.ids.txt"
    ids_file.write_text("\n".join(ids))
    cache = location.cache_folder(path)  # <store>/.cache, or under AMNETVID_CACHE_DIR for S3
    try:
        shutil.rmtree(cache, ignore_errors=True)
        cold = dict.fromkeys(("read first-ever", "read cold", "read no cache"), float("inf"))
        for _ in range(repeat):
            shutil.rmtree(cache, ignore_errors=True)
            cold["read first-ever"] = min(cold["read first-ever"], fresh_process(COLD_READ, path, ids_file,
                                                                                 READ_FRAMES)[-1])
            cold["read cold"] = min(cold["read cold"], fresh_process(COLD_READ, path, ids_file, READ_FRAMES)[-1])
            cold["read no cache"] = min(cold["read no cache"], fresh_process(COLD_READ, path, ids_file, READ_FRAMES,
                                                                             cache=False)[-1])
        out.update(cold)
        FeatureStore(path).read_arrays(ids, n_frames=READ_FRAMES)  # maps the cache file in this process
        out["read warm"], (scores, maps) = best_of(
            repeat, lambda: FeatureStore(path).read_arrays(ids, n_frames=READ_FRAMES))
        assert scores.shape == (n, READ_FRAMES) and maps.shape == (n, READ_FRAMES, *SHAPE)
        del scores, maps
        if embeddings:  # what the SQL example's mean embeddings are for, without SQL (no cache: disk speed)
            out["read_embeddings, mean of 4"], means = best_of(
                repeat, lambda: FeatureStore(path).read_embeddings(ids, n_frames=READ_FRAMES, pooling="mean"))
            assert means.shape == (n, EMBEDDING_DIM)
            del means
    finally:
        ids_file.unlink(missing_ok=True)
    for name, query in queries.items():
        if name.startswith("embeddings") and not embeddings:
            continue
        try:
            out[f"sql: {name}"], _ = best_of(repeat, lambda: FeatureStore(path).sql(query))
        except StoreError as e:  # 100,000 videos with embeddings: the cosine example runs out of memory
            out[f"sql: {name}"] = float("nan")
            print(f"    sql: {name}: {' '.join(str(e).split())[:160]}", flush=True)
    out["info"], info = best_of(repeat, lambda: FeatureStore(path).info())
    out["verify"] = min(fresh_process(VERIFY, path)[0] for _ in range(repeat))
    out["parts"] = sum(info["files"].values())
    out["bytes"] = info["size_bytes"]
    assert info["tables"]["videos"] == n, info["tables"]
    # compact a copy (hard links, or server-side on S3): the store itself keeps growing as written
    copy = f"{path}.compact"
    remove_store(copy)
    copy_store(path, copy)
    try:
        out["compact"], _ = best_of(1, lambda: FeatureStore(copy).compact())
        after = FeatureStore(copy).info()
        out["parts after compact"] = sum(after["files"].values())
        out["bytes after compact"] = after["size_bytes"]
    finally:
        remove_store(copy)
    del fs
    return out


COUNTS = ("parts", "bytes", "parts after compact", "bytes after compact")


def fmt_cost(seconds: float, n: int) -> str:
    ms = seconds / n * 1e3
    return f"{ms:9.3f} ms" if ms < 10 else f"{ms:9.1f} ms"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="store sizes in videos, comma-separated, measured in this order as the store grows")
    parser.add_argument("--embeddings", default="off,on", help="off, on or off,on: stores without and with "
                                                                "frame embeddings")
    parser.add_argument("--flush-every", type=int, default=16, help="videos per write (the extractor's default)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure (1 at 50,000 videos and more)")
    parser.add_argument("--root", default=None, help="folder the stores are written under (default: a new "
                                                     "temporary folder, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--s3", action="store_true",
                        help="write the stores to s3://%s/ on a SeaweedFS server that the bench starts on "
                             "localhost (its data and the array cache, AMNETVID_CACHE_DIR, in the temporary "
                             "folder; needs `weed`: pip install -e '.[s3]'), stopped at the end" % S3_BUCKET)
    args = parser.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    modes = [m.strip() for m in args.embeddings.split(",") if m.strip()]
    if not sizes or min(sizes) < 1 or any(m not in ("off", "on") for m in modes):
        parser.error("--sizes takes positive counts, --embeddings off, on or off,on")
    if args.root is not None and "://" in args.root:
        parser.error("--root is a local folder; for S3 give --s3 (the bench starts its own SeaweedFS server)")
    if args.s3 and weed_binary() is None:
        parser.error("--s3 needs SeaweedFS's `weed`: pip install -e '.[s3]'")
    root = Path(tempfile.mkdtemp(prefix="bench_store_scale_", dir=args.root))
    queries = readme_sql()
    server, stores = None, str(root)
    if args.s3:  # the environment is set before any S3 access; the fresh processes inherit it
        server = S3Server(root / "seaweedfs", S3_BUCKET, volumes=2000)  # up to 128 GB, as the disk allows
        try:
            os.environ.update(server.start())
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        os.environ["AMNETVID_CACHE_DIR"] = str(root / "cache")
        stores = f"s3://{S3_BUCKET}"
    print(f"{FRAMES} frames x {SHAPE} maps + a score per video (embeddings: {EMBEDDING_DIM} float16 values per "
          f"frame), one write per {args.flush_every} videos; CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores")
    if server is None:
        print(f"  amnetvid_sk from {Path(amnetvid_sk.__file__).parent}; stores under {root} on {disk(root)}")
    else:
        print(f"  amnetvid_sk from {Path(amnetvid_sk.__file__).parent}; stores in {stores}/ on SeaweedFS "
              f"({server.env['AWS_ENDPOINT_URL']}, same machine), its data and the array cache under {root} "
              f"on {disk(root)}")
    print(f"  {load_average()}")
    try:
        for mode in modes:
            path = f"{stores}/store-embeddings-{mode}"
            writer = Writer(path, EMBEDDING_DIM if mode == "on" else 0, args.flush_every)
            fs = FeatureStore(path)
            results = {}
            labelled = 0
            for n in sizes:
                started = time.perf_counter()
                writer.grow(n)
                fs.write_labels({"video_id": [f"video{i:07d}" for i in range(labelled, n)],
                                 "short_term": np.linspace(0.5, 0.9, n - labelled), "n_short": [30] * (n - labelled),
                                 "long_term": np.linspace(0.2, 0.6, n - labelled), "n_long": [10] * (n - labelled),
                                 "source": ["synthetic"] * (n - labelled)})
                labelled = n
                wrote = time.perf_counter() - started
                res = measure(path, n, args.repeat if n < 50_000 else 1, mode == "on", queries, root)
                res["write, mean"] = writer.per_video() * n
                res["write, last tenth"] = writer.per_video(0.1) * n
                results[n] = res
                print(f"  embeddings {mode}, {n:,} videos: written in {wrote:.0f} s, measured in "
                      f"{time.perf_counter() - started - wrote:.0f} s; {load_average()}", flush=True)
                print("    ms per video: " + ", ".join(f"{k} {v / n * 1e3:.3f}" for k, v in res.items()
                                                       if k not in COUNTS) + "; " +
                      ", ".join(f"{k} {res[k]:,}" for k in COUNTS), flush=True)
            print(f"embeddings {mode}: per video (ms), {', '.join(f'{n:,}' for n in sizes)} videos, "
                  f"and the largest size / the smallest (goal <= 1.5x):")
            names = ["write, mean", "write, last tenth", "read first-ever", "read cold", "read no cache",
                     "read warm"] + [k for k in results[sizes[0]] if k.startswith(("read_embeddings", "sql: "))] \
                + ["info", "verify", "compact"]
            for name in names:
                row = "  ".join(fmt_cost(results[n][name], n) for n in sizes)
                ratio = (results[sizes[-1]][name] / sizes[-1]) / (results[sizes[0]][name] / sizes[0])
                flag = "" if len(sizes) == 1 else f"  {ratio:5.2f}x" + ("" if ratio <= 1.5 else "  over 1.5x")
                if len(sizes) > 2:  # the smallest size carries each operation's fixed cost: the last step too
                    step = (results[sizes[-1]][name] / sizes[-1]) / (results[sizes[-2]][name] / sizes[-2])
                    flag += f"  (last step {step:.2f}x)"
                print(f"  {name:38s} {row}{flag}")
            for name in COUNTS:
                if name.startswith("bytes"):
                    row = "  ".join(f"{results[n][name] / n / 1e3:9.1f} kB" for n in sizes)
                    total = "  ".join(f"{results[n][name] / 1e9:.3f}" for n in sizes)
                    print(f"  {name + ' per video':38s} {row}   (GB: {total})")
                else:
                    row = "  ".join(f"{results[n][name]:12,d}" for n in sizes)
                    print(f"  {name + ' (files)':38s} {row}")
            if not args.keep:
                remove_store(path)
        print(f"  {load_average()}")
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
