"""``shardguard scan``: shards → features (decode once, hash, embed) → verdicts → outputs + manifest.

``run(argv)`` parses shardguard's flags and hands the rest to Beam's PipelineOptions (any flag that
neither defines is refused), so ``--runner DataflowRunner --project … --region …`` work unchanged.
"""
from __future__ import annotations

from shardguard.pipelines.config import ConfigError
from shardguard.pipelines.flags import add_scan_flags, config_from_args
from shardguard.pipelines.inputs import expand_inputs
from shardguard.pipelines.launch import Launch, claim_and_install, execute, now, staging_dir
from shardguard.pipelines.options import (
    StrictParser,
    UsageError,
    configure_filesystems,
    is_dry_run,
    is_local,
    pipeline_options,
    split_args,
)
from shardguard.pipelines.plan import prepare
from shardguard.pipelines.runutil import error_exit
from shardguard.transforms.contracts import RunLayout

DESCRIPTION = """Scan image-text shards (img2dataset parquet or webdataset) against known-bad hash lists,
concept indexes and rules; write clean shards, removal/review/tag records, errors, stored features,
per-shard summaries and a manifest that accounts for every input row. Beam pipeline options
(--runner, --direct_num_workers, Dataflow's --project/--region …) are accepted beside these flags.
Exit codes: 0 ok, 1 a shard failed or the run's health check failed, 2 bad usage/config/list/model,
3 the output cannot be written."""


def scan_parser() -> StrictParser:
    """The scan command's parser (user help; Beam's options are checked separately)."""
    p = StrictParser(prog="shardguard scan", description=DESCRIPTION)
    add_scan_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def check_device(cfg, options) -> None:
    """``--device cuda`` on a local run without CUDA is refused before any work."""
    if not cfg.clip.model or not str(cfg.clip.device).startswith("cuda") or not is_local(options):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.clip.device}: no CUDA device on this machine (use auto or cpu)")


def plan_scan(argv) -> tuple[Launch, object]:
    """(the launch without its plan, the config): parse, validate, list inputs; raise on anything wrong."""
    args, beam_args = split_args(scan_parser(), argv)
    options = pipeline_options(beam_args)
    configure_filesystems(options)
    cfg = config_from_args(args)
    check_device(cfg, options)
    specs = expand_inputs(cfg.inputs, cfg.output)
    return Launch(kind="scan", plan=None, specs=specs, options=options, started=now(), quiet=args.quiet), cfg


def run(argv=None) -> int:
    """Run a scan; return the exit code (0 ok, 1 a shard failed or the health check failed,
    2 usage/config/list/model error, 3 the output cannot be written)."""
    try:
        launch, cfg = plan_scan(argv)
        with staging_dir() as staging:
            launch.plan = prepare(cfg, RunLayout(cfg.output), staging)
            if is_dry_run(launch.options):
                return execute(launch)
            claim_and_install(launch)
    except (UsageError, ValueError, OSError) as exc:  # usage, config, list, model, pin or output errors
        return error_exit(exc)
    return execute(launch)
