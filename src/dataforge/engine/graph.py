"""The build graph, derived from the recipe: one read → convert → validate → filter (→ quality) branch per source,
then dedup → mix → split over all of them. A recipe with three sources has three branches.
"""

from __future__ import annotations

from graphlib import TopologicalSorter
from pathlib import Path

from ..hub.sync import locked_entries
from ..recipe import LoadedRecipe
from ..stages import convert, dedup, filter, mix, quality, read, render, split, validate
from ..stages.base import Stage
from ..stages.sharding import per_part_stage


def build_graph(loaded: LoadedRecipe) -> list[Stage]:
    """Every stage of the build, in a topological order (ties broken by recipe order)."""
    recipe, root = loaded.recipe, loaded.root
    stages: list[Stage] = []
    filtered: list[str] = []
    locks = locked_entries(loaded)  # hub sources read what their lock entry pins (fetched before the graph)
    for src in recipe.sources:
        locked = locks.get(src.name)
        files = tuple(read.source_files(src, root, locked))
        # A hub source's key takes its lock entry (commit, file hashes); local sources' keys stay as they were.
        pinned = {"hub": locked.key() | {"license": locked.license}} if locked is not None else {}
        read_config = {
            "from": src.from_,
            "format": src.format,
            "columns": dict(sorted(src.columns.items())),
            "max_rows": src.max_rows,
            "files": [read.display_path(f, root) for f in files],
            **pinned,
        }
        # A shard's key leaves out the file list and the hub lock (its own bytes' digest is in its key): a file added
        # to a source, or a hub commit that changes one file, does not re-read the others.
        shard_config = {k: v for k, v in read_config.items() if k not in ("files", "hub")}
        r = Stage(
            name=f"read:{src.name}",
            kind="read",
            version=read.VERSION,
            inputs=(),
            outputs=("raw", "rejects"),
            config=read_config,
            run=None,  # runs over shards
            files=files,
            source=src.name,
            sharded=read.sharded_read(
                src, root, list(files), max(1, int(recipe.shard_mb * (1 << 20))), shard_config=shard_config
            ),
        )
        # `substitute:` fills placeholders as the last step of convert; in the key only when set (other keys stay).
        fills = recipe.substitutions(src)
        c = Stage(
            f"convert:{src.name}",
            "convert",
            convert.VERSION,
            (r.name,),
            ("examples", "rejects"),
            {
                "source": src.name,
                "reasoning": src.reasoning or recipe.reasoning,
                **({"substitute": fills} if fills else {}),
            },
            None,
            source=src.name,
            sharded=per_part_stage(
                r.name,
                "raw",
                convert.convert_table,
                {"source": src.name, "reasoning": src.reasoning or recipe.reasoning, "fills": fills},
                meta=lambda i, m: m,
            ),
        )
        v = Stage(
            f"validate:{src.name}",
            "validate",
            validate.VERSION,
            (c.name,),
            ("examples", "rejects"),
            {"lint_ignore": sorted(recipe.lint.ignore)},
            None,
            source=src.name,
            sharded=per_part_stage(c.name, "examples", validate.validate_table, {"ignore": sorted(recipe.lint.ignore)}),
        )
        f = Stage(
            f"filter:{src.name}",
            "filter",
            filter.VERSION,
            (v.name,),
            ("examples", "rejects"),
            recipe.filters.model_dump(),
            None,
            source=src.name,
            sharded=per_part_stage(v.name, "examples", filter.filter_table, {"policy": recipe.filters}),
        )
        stages += [r, c, v, f]
        if recipe.quality is not None:  # quality signals and their thresholds, after the cheap filters
            q = Stage(
                f"quality:{src.name}",
                "quality",
                quality.VERSION,
                (f.name,),
                ("examples", "rejects", "signals"),
                recipe.quality.model_dump(),
                None,
                libraries=quality.LIBRARIES,
                source=src.name,
                sharded=per_part_stage(
                    f.name,
                    "examples",
                    quality.quality_table,
                    {"policy": recipe.quality, "stage": f"quality:{src.name}"},
                    merge=quality.merge_quality,
                ),
            )
            stages.append(q)
            f = q
        filtered.append(f.name)
    names = [s.name for s in recipe.sources]
    eval_files = tuple(dedup_files(recipe.dedup.decontaminate, root))
    d = Stage(
        "dedup",
        "dedup",
        dedup.VERSION,
        tuple(filtered),
        ("examples", "rejects"),
        # `workers` changes how fast, not what: it stays out of the key.
        {
            **recipe.dedup.model_dump(exclude={"near": {"workers"}}),
            "seed": recipe.seed,
            "eval_files": [read.display_path(f, root) for f in eval_files],
        },
        dedup.make_sharded_dedup(filtered, recipe.dedup, root, list(eval_files), recipe.seed),
        files=eval_files,
        libraries=("pyarrow", "numpy", "datasketch", "scipy"),
        context=True,
    )
    m = Stage(
        "mix",
        "mix",
        mix.VERSION,
        (d.name,),
        ("examples", "rejects"),
        {**recipe.mix.model_dump(), "seed": recipe.seed, "sources": names},
        mix.make_sharded_mix(d.name, names, recipe.mix, recipe.seed),
        libraries=("pyarrow", "numpy"),
        context=True,
    )
    s = Stage(
        "split",
        "split",
        split.VERSION,
        (m.name,),
        ("train", "val", "rejects"),
        {
            **recipe.split.model_dump(),
            "seed": recipe.seed,
            "sources": names,
            "near": recipe.dedup.near.model_dump(exclude={"workers"}) if recipe.dedup.near else None,
        },
        split.make_sharded_split(m.name, names, recipe.split, recipe.seed, recipe.dedup.near),
        libraries=("pyarrow", "numpy"),
        context=True,
    )
    stages += [d, m, s]
    stages += [render_stage(spec, loaded, s.name) for spec in recipe.render]
    return topological(stages)


def dedup_files(paths: list[str], root: Path) -> list[Path]:
    """The files `dedup.decontaminate` names (each path or glob), or an error naming the one that matches none."""
    from ..readers_files import files_problem, find_files

    found: list[Path] = []
    for pattern in paths:
        files = find_files(pattern, root)
        problem = files_problem(files, pattern, root, what="dedup.decontaminate", key=None)
        if problem is not None:  # nothing matched, or a file that cannot be read: said the way sources say it
            raise problem
        found += files.files
    return found


def render_stage(spec, loaded: LoadedRecipe, split_stage: str) -> Stage:
    """The render stage of one target; its key covers the tokenizer and template digests."""
    from ..render.target import load_target

    target = load_target(
        spec.name,
        spec.tokenizer,
        loaded.root,
        revision=spec.revision,
        chat_template=spec.chat_template,
        trust_remote_code=spec.trust_remote_code,
    )
    # `workers` changes how fast, not what: it stays out of the key.
    config = {
        **spec.model_dump(exclude={"workers"}),
        "tokenizer_digest": target.tokenizer_digest,
        "template_digest": target.template_digest,
    }
    return Stage(
        f"render:{spec.name}",
        "render",
        render.VERSION,
        (split_stage,),
        ("train", "val", "rejects") + (render.PACKED_OUTPUTS if spec.pack is not None else ()),
        config,
        None,
        libraries=("pyarrow", "numpy", "transformers", "tokenizers", "jinja2"),
        sharded=render.sharded_render(split_stage, spec, target),
    )


def topological(stages: list[Stage]) -> list[Stage]:
    """`stages` ordered so every stage follows its inputs; stable with respect to the given order."""
    by_name = {s.name: s for s in stages}
    sorter = TopologicalSorter({s.name: set(s.inputs) for s in stages})
    sorter.prepare()
    order: list[str] = []
    rank = {s.name: i for i, s in enumerate(stages)}
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=rank.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return [by_name[n] for n in order]


def rejecting_stages(stages: list[Stage]) -> list[str]:
    """Stages whose output includes a `rejects` table, in graph order."""
    return [s.name for s in stages if "rejects" in s.outputs and s.kind != "render"]
