"""Any Beam runner: the Dataflow job graph translated offline (dry run), remote storage through Beam
filesystems (an S3-compatible server on 127.0.0.1), and CPU fallback for CLIP workers."""
from __future__ import annotations

import json
import logging

import pytest
from conftest import ROOT, run_scan, sample_list_flags

DATAFLOW = ["--runner", "DataflowRunner", "--project", "demo-project", "--region", "us-central1",
            "--temp_location", "gs://shardguard-example/tmp", "--dry_run=True"]
# Our own step names (two levels deep): Dataflow matches steps by name when a job is updated.
STABLE = {"Shards", "Shards/Impulse", "Shards/Emit", "Features", "Features/Spread", "Features/ComputeFeatures",
          "Verdict", "Verdict/DecideAndWrite"}


def _graph(capsys, argv) -> list[str]:
    import glob
    import tempfile

    before = set(glob.glob(f"{tempfile.gettempdir()}/shardguard-*"))
    assert run_scan(argv) == 0
    assert set(glob.glob(f"{tempfile.gettempdir()}/shardguard-*")) == before  # no staging dir left behind
    out = capsys.readouterr().out
    assert "dry run: job graph translated" in out
    return [l.strip() for l in out.splitlines() if l.startswith("  ")]


def test_dataflow_dry_run_graph_is_offline_and_stable(sample, capsys, tmp_path):
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient",
                        reason="needs apache-beam[gcp] (pip install .[dataflow])")
    src, _ = sample
    argv = ["--input", str(src / "shards" / "*.parquet"), "--output", "gs://shardguard-example/out",
            *sample_list_flags(src), *DATAFLOW]
    first = _graph(capsys, argv)
    ours = {"/".join(n.split("/")[:2]) for n in first}
    assert STABLE <= ours
    assert not [n for n in ours if "lambda" in n or "0x" in n]
    assert _graph(capsys, argv) == first  # the same names every time
    clip = _graph(capsys, argv + ["--clip-model", str(ROOT / "configs/models/tiny-clip.json"),
                                  "--expand-threshold", "0.9"])
    assert {"Verdict/Dataset-neighbor-0", "Verdict/DecideAndWrite"} <= {"/".join(n.split("/")[:2]) for n in clip}
    assert {"Verdict/Dataset-neighbor-0/Seeds", "Verdict/Dataset-neighbor-0/BoundSeeds"} <= \
        {"/".join(n.split("/")[:3]) for n in clip}
    assert not (tmp_path / "out").exists()


def test_dry_run_false_is_false_and_local_dry_runs_are_refused():
    from shardguard.pipelines.options import UsageError, is_dry_run, pipeline_options
    assert not is_dry_run(pipeline_options(["--dry_run=False"]))
    assert is_dry_run(pipeline_options(["--dry_run=True", "--runner", "DataflowRunner"]))
    with pytest.raises(UsageError, match="would run the whole scan"):
        pipeline_options(["--dry_run=True"])


def test_run_options_views_are_made_once_and_behave_as_beams():
    """One view per class, sharing Beam's value store both ways; pickled like plain options."""
    import pickle

    from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, PipelineOptions

    from shardguard.pipelines.options import pipeline_options
    argv = ["--project", "p1", "--direct_num_workers", "3"]
    opts, plain = pipeline_options(argv), PipelineOptions(argv)
    gcp = opts.view_as(GoogleCloudOptions)
    assert opts.view_as(GoogleCloudOptions) is gcp and gcp.project == "p1"
    gcp.project = "p2"  # through the view: a later view, a plain Beam view and the store see it
    assert opts.view_as(GoogleCloudOptions).project == "p2"
    assert PipelineOptions.view_as(opts, GoogleCloudOptions).project == "p2"
    assert opts.view_as(DirectOptions).direct_num_workers == plain.view_as(DirectOptions).direct_num_workers == 3
    back = pickle.loads(pickle.dumps(opts))
    assert "_views" not in back.__dict__ and back.view_as(GoogleCloudOptions).project == "p2"
    plain.view_as(GoogleCloudOptions).project = "p2"
    mine, theirs = opts.get_all_options(), plain.get_all_options()
    assert {k: v for k, v in mine.items() if k not in ("runner", "direct_running_mode")} == \
        {k: v for k, v in theirs.items() if k not in ("runner", "direct_running_mode")}


def test_cpu_fallback_log_line(caplog):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from shardguard.indexes.models import parse_spec
    from shardguard.transforms.embed import LoadedClip
    with caplog.at_level(logging.INFO, logger="shardguard"):
        m = LoadedClip(parse_spec(str(ROOT / "configs/models/tiny-clip.json")), "auto", 4)
    assert m.device == "cpu" and "no CUDA device on this worker: CLIP runs on CPU" in caplog.text
    with pytest.raises(RuntimeError, match="no CUDA device"):
        LoadedClip(parse_spec(str(ROOT / "configs/models/tiny-clip.json")), "cuda", 4)


@pytest.fixture()
def s3(tmp_path):
    """An S3-compatible server (moto) on 127.0.0.1, stopped whatever happens."""
    moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (dev extra)")
    boto3 = pytest.importorskip("boto3", reason="needs apache-beam[aws] (dev extra)")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{server._server.server_port}"
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                              aws_secret_access_key="test", region_name="us-east-1")
        client.create_bucket(Bucket="data")
        flags = ["--s3_endpoint_url", endpoint, "--s3_access_key_id", "test", "--s3_secret_access_key", "test",
                 "--s3_region_name", "us-east-1"]
        yield client, flags
    finally:
        server.stop()
        from apache_beam.io.filesystems import FileSystems
        FileSystems.set_options(None)  # Beam keeps filesystem options per process


def _keys(client, prefix):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket="data", Prefix=prefix).get("Contents", []))


def test_s3_round_trip_manifest_resume_and_atomic_outputs(sample, s3, monkeypatch):
    client, flags = s3
    src, planted = sample
    for p in sorted((src / "shards").glob("*.parquet")) + sorted((src / "lists").glob("*")):
        client.upload_file(str(p), "data", f"in/{p.parent.name}/{p.name}")
    argv = ["--input", "s3://data/in/shards/*.parquet", "--output", "s3://data/out",
            "--hash-list", "pdq=s3://data/in/lists/known-bad-pdq.csv", *flags, "--direct_num_workers=1"]
    assert run_scan(argv) == 0
    keys = _keys(client, "out/")
    assert {"out/manifest.json", "out/clean/00000.parquet", "out/removed/00002.parquet",
            "out/shards/00001.json", "out/lists/known-bad-pdq/sidecar.json"} <= set(keys)
    assert not [k for k in keys if "/.tmp-" in k or k.rsplit("/", 1)[1].startswith(".") and
                k != "out/.shardguard-run.json"]
    m = json.loads(client.get_object(Bucket="data", Key="out/manifest.json")["Body"].read())
    assert m["totals"]["counts"]["removed"] == len(planted["bad_keys"])
    before = {k: client.head_object(Bucket="data", Key=k)["ETag"] for k in keys if k.startswith("out/clean/")}
    stamp = client.head_object(Bucket="data", Key="out/shards/00000.json")["LastModified"]
    assert run_scan(argv) == 0  # resume: every shard already done
    assert client.head_object(Bucket="data", Key="out/shards/00000.json")["LastModified"] == stamp
    assert {k: client.head_object(Bucket="data", Key=k)["ETag"] for k in before} == before
    from shardguard.pipelines.cli import main as cli
    assert cli(["manifest", "verify", "s3://data/out", *flags]) == 0
    _refilter_copies_server_side(client, flags, monkeypatch)


def _refilter_copies_server_side(client, flags, monkeypatch):
    """A re-filter on an object store takes its parent's unchanged files by a server-side copy: no
    worker writes their bytes (part of the round trip above: a scan on the local S3 server takes
    ~20 s; Beam makes a boto3 client for every file operation)."""
    from apache_beam.io.filesystems import FileSystems

    from shardguard.pipelines.cli import main as cli
    from shardguard.pipelines.refilter import run as refilter

    created, create = [], FileSystems.create
    monkeypatch.setattr(FileSystems, "create", staticmethod(lambda path, *a, **k: created.append(path) or
                                                            create(path, *a, **k)))
    assert refilter(["--from", "s3://data/out", "--output", "s3://data/c", *flags, "--direct_num_workers=1"]) == 0
    clean = _keys(client, "out/clean/")
    assert clean and not [p for p in created if p.endswith(".parquet") and ("/clean/" in p or "/features/" in p)]
    body = lambda key: client.get_object(Bucket="data", Key=key)["Body"].read()  # noqa: E731
    assert all(body(k) == body("c/" + k[len("out/"):]) for k in clean)
    assert cli(["manifest", "verify", "s3://data/c", *flags]) == 0


def test_s3_server_side_copy_is_checked_before_it_appears(s3, monkeypatch):
    """The copy is made server-side (nothing is written through the worker) under a temporary name
    and read against the recorded sha256: bytes that are not the recorded ones never appear at the
    destination, and no temporary object is left."""
    import hashlib

    from apache_beam.io.filesystems import FileSystems

    from shardguard.indexes import fileio

    monkeypatch.setattr(FileSystems, "create", staticmethod(lambda *a, **k: pytest.fail("streamed through")))

    client, flags = s3
    from shardguard.pipelines.options import configure_filesystems, pipeline_options

    configure_filesystems(pipeline_options(flags))
    client.put_object(Bucket="data", Key="unit/p/a.parquet", Body=b"rows")
    good = hashlib.sha256(b"rows").hexdigest()
    assert fileio.copy_verified("s3://data/unit/p/a.parquet", "s3://data/unit/c/a.parquet", good, link=True) == good
    assert client.get_object(Bucket="data", Key="unit/c/a.parquet")["Body"].read() == b"rows"
    with pytest.raises(ValueError, match="not the recorded"):
        fileio.copy_verified("s3://data/unit/p/a.parquet", "s3://data/unit/d/a.parquet", "0" * 64, link=True)
    assert _keys(client, "unit/d/") == [] and _keys(client, "unit/c/") == ["unit/c/a.parquet"]
