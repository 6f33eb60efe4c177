"""Wall time of download + scan vs. download alone for the same shards (the scan's share of the job).

Images (seeded, 384 px JPEG) are served from 127.0.0.1; img2dataset downloads them into parquet
shards (no re-encoding), then shardguard scans those shards with all five hashes and a PDQ list.
Run: ``.venv/bin/python benchmarks/bench_download_scan.py [--images N]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=2)
    a = ap.parse_args()
    import logging

    import pyarrow as pa
    import pyarrow.parquet as pq
    from img2dataset import download

    from shardguard.pipelines.sample_data import encode, make_image, serve_images
    from shardguard.pipelines.scan import run as scan
    logging.getLogger("shardguard").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="sg-dl-"))
    try:
        served = {f"/i/{i}.jpg": encode(make_image(i, 384)) for i in range(a.images)}
        (work / "pdq.txt").write_text("0" * 64 + "\n")
        with serve_images(served) as srv:
            pq.write_table(pa.table({"url": [srv.url(p) for p in served], "caption": ["c"] * a.images}),
                           work / "meta.parquet")
            t_dl, _ = timed(download, url_list=str(work / "meta.parquet"), input_format="parquet",
                            url_col="url", caption_col="caption", output_format="parquet",
                            output_folder=str(work / "shards"), processes_count=a.processes, thread_count=16,
                            resize_mode="no", disable_all_reencoding=True, enable_wandb=False,
                            number_sample_per_shard=500, distributor="multiprocessing", timeout=10, retries=0)
        t_scan, rc = timed(scan, ["--input", str(work / "shards" / "*.parquet"), "--output", str(work / "out"),
                                  "--hash-list", f"pdq={work / 'pdq.txt'}"])
        assert rc == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = t_dl + t_scan
    print(f"# download (img2dataset, loopback server) + scan, {a.images} images; {machine()}")
    print(table([("download alone", f"{t_dl:.1f}", f"{a.images / t_dl:.0f}", "-"),
                 ("scan (5 hashes + PDQ list)", f"{t_scan:.1f}", f"{a.images / t_scan:.0f}", f"{100 * t_scan / total:.0f}%"),
                 ("download + scan", f"{total:.1f}", f"{a.images / total:.0f}", "100%")],
                ("step", "seconds", "images/s", "share of download+scan")))


if __name__ == "__main__":
    main()
