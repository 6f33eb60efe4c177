"""``shardguard lists build`` and ``shardguard concepts build``: artifacts made ahead of a run."""
from __future__ import annotations

import json

from shardguard.pipelines.options import StrictParser, split_args


def lists_build(argv) -> int:
    """Parse and validate a list file and build its fingerprinted artifact directory."""
    from shardguard.indexes.artifacts import build_artifact
    from shardguard.indexes.hashtypes import get_hash_type
    from shardguard.indexes.listformats import ListOptions, parse_list
    from shardguard.pipelines import configload
    from shardguard.pipelines.config import HashListSpec
    from shardguard.pipelines.lists import default_name, settings_for

    p = StrictParser(prog="shardguard lists build", description="parse, validate and build a list artifact")
    p.add_argument("--type", required=True, help="hash type: md5, sha1, sha256, phash, dhash or pdq")
    p.add_argument("--input", required=True, help="list file (plain, typed, csv, jsonl)")
    p.add_argument("--output", required=True, help="artifact directory to create")
    p.add_argument("--name", help="list name (default: the file stem)")
    p.add_argument("--max-distance", type=int, help="match threshold (default: the type's usual one)")
    p.add_argument("--min-quality", type=int, help="PDQ quality floor (default 50)")
    p.add_argument("--action", default="remove", choices=("remove", "quarantine", "tag"), help="default action")
    p.add_argument("--format", default="auto", help="auto, plain, typed, csv or jsonl")
    p.add_argument("--hash-column", help="CSV/JSON hash column (name or 0-based index)")
    p.add_argument("--id-column", help="CSV/JSON entry-id column")
    p.add_argument("--type-column", help="CSV/JSON hash-type column")
    p.add_argument("--other-types", default="error", choices=("error", "skip"),
                   help="entries of another type: error (default) or skip (counted)")
    a, rest = split_args(p, argv)
    data = {k: v for k, v in {"type": a.type, "path": a.input, "name": a.name or "", "max_distance": a.max_distance,
                              "min_quality": a.min_quality, "action": a.action, "format": a.format,
                              "other_types": a.other_types}.items() if v is not None}
    spec = configload.build(HashListSpec, data, "command line")
    parsed = parse_list(a.input, get_hash_type(a.type), ListOptions(
        fmt=a.format, hash_column=a.hash_column, id_column=a.id_column, type_column=a.type_column,
        other_types=a.other_types))
    sidecar = build_artifact(parsed, settings_for(spec, default_name(spec)), a.output, a.input)
    print(json.dumps({k: sidecar[k] for k in ("name", "type", "entries", "max_distance", "min_quality",
                                              "fingerprint")}, indent=2))
    return 0


def concepts_build(argv) -> int:
    """Embed text prompts, exemplar images or given vectors into a concept index artifact."""
    from shardguard.indexes.concepts import build_concept_index
    from shardguard.indexes.models import parse_spec
    from shardguard.pipelines import concept_sources as cs
    from shardguard.transforms.embed import LoadedClip

    p = StrictParser(prog="shardguard concepts build", description="build a CLIP concept index")
    p.add_argument("--model", required=True, help="CLIP model spec (the scan must use the same), or "
                                                  "supplied:NAME for vectors of a declared model (with --embeddings)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", help="YAML: concepts: [{name, prompts, threshold, action}]")
    src.add_argument("--exemplars", help="folder with one sub-folder of images per concept")
    src.add_argument("--embeddings", help=".npy (n, dim) array of embeddings for one concept")
    p.add_argument("--name", help="concept name (--embeddings)")
    p.add_argument("--threshold", type=float, help="cosine threshold in (0, 1] (--exemplars, --embeddings)")
    p.add_argument("--action", default="quarantine", choices=("remove", "quarantine", "tag"), help="action")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--output", required=True, help="index directory to create")
    a, _ = split_args(p, argv)
    if (a.exemplars or a.embeddings) and a.threshold is None:
        p.error("--threshold is required with --exemplars/--embeddings")
    if a.embeddings and not a.name:
        p.error("--name is required with --embeddings")
    if a.model.startswith("supplied:"):  # vectors of a declared model (a scan with --embeddings-model)
        if not a.embeddings:
            p.error("--model supplied:NAME builds from --embeddings only (no model is loaded)")
        from shardguard.pipelines.embeddings import declared_model_info

        concepts = cs.from_embeddings(a.embeddings, a.name, a.threshold, a.action)
        info = declared_model_info(a.model, concepts[0].vectors.shape[1])
        return _built(build_concept_index(concepts, info, a.output))
    model = LoadedClip(parse_spec(a.model), a.device, 32)
    if a.prompts:
        concepts = cs.from_prompts(a.prompts, model)
    elif a.exemplars:
        concepts = cs.from_exemplars(a.exemplars, model, a.threshold, a.action)
    else:
        concepts = cs.from_embeddings(a.embeddings, a.name, a.threshold, a.action)
    return _built(build_concept_index(concepts, model.info, a.output))


def _built(sidecar: dict) -> int:
    print(json.dumps({"concepts": sidecar["concepts"], "dim": sidecar["dim"],
                      "fingerprint": sidecar["fingerprint"]}, indent=2))
    return 0
