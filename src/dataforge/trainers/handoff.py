"""Hand-off configs: the same run, ready for LLaMA-Factory, axolotl or ms-swift.

Written under `<output_dir>/handoff/` for every trainer the build exports (`outputs.exports`); a trainer the
build does not export is skipped and named. Data paths are absolute, so each file runs from any directory;
the settings (method, LoRA/QLoRA, length, trl arguments with a counterpart) are translated from `train:`.

SFT hands LLaMA-Factory and axolotl the build's own tokens, so they train exactly the labels dataforge
rendered and checked (every `train_on` mode and every turn `weight` of 0 is already in the labels as -100),
never a re-rendering:

* `llamafactory/tokenized/`: a `datasets` DatasetDict (`save_to_disk`) with splits `train` and `validation`,
  which LLaMA-Factory loads whole from `tokenized_path` (skipping its own templating). When the target packs,
  the rows are dataforge's packed rows as LLaMA-Factory's own `neat_packing` writes them: `input_ids`,
  `labels`, `position_ids` restarting per segment, `attention_mask` holding segment ids 1..k (0 on padding),
  every row padded to the same length (`cutoff_len`, a multiple of 8: its collator pads `input_ids` to a
  multiple of 8 but never `position_ids`); `neat_packing: true` makes its collator turn the ids into a
  block-diagonal mask. Unpacked targets give `input_ids`, `attention_mask` (ones), `labels`.
* `axolotl/data/{train,val}.parquet`: axolotl's pre-tokenized form (a dataset with no `type:`), exactly the
  columns its docs name: `input_ids`, `attention_mask`, `labels`, one rendered row each; `sample_packing`
  (multipack, with flash attention) when the target packs.

ms-swift takes no pre-tokenized rows: its `--cached_dataset` (ms-swift 4.x) holds the raw rows plus lengths and
its template encodes them while training. So its hand-off trains on the ms-swift export, whose messages carry
each turn's weight as ms-swift's per-message `loss` / `loss_scale`; `train_on: last` becomes `--loss_scale
last_round`, and `first_n` (no ms-swift counterpart) is said in the header. `--packing true --attn_impl
flash_attn` when the target packs.

The chat exports stay the route for DPO and KTO (the files under `exports/<tool>/`), and for LLaMA-Factory
also SFT's fallback: `dataset:` / `dataset_info.json` still name them (LLaMA-Factory requires `dataset` even
when `tokenized_path` holds data, and ignores it then); delete `tokenized_path` to train from them instead.
Each file's header says how the rows were made, the packing efficiency dataforge measured, which attention
backends keep packed rows apart, and what the tool cannot take (per-token loss weights; `first_n` in ms-swift).
Every dataset written is byte-identical for the same build (fixed fingerprints, no timestamps).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from ..recipe import LoadedRecipe, Train
from .build import KINDS, TrainingData

# The row kind each method trains on, as exports name their files.
EXPORT_KIND = {"sft": "sft", "dpo": "preference", "kto": "kto"}
# trl argument → (LLaMA-Factory, axolotl, ms-swift) name; all three take these, under these names.
ARGUMENTS = {
    "num_train_epochs": ("num_train_epochs", "num_epochs", "num_train_epochs"),
    "max_steps": ("max_steps", "max_steps", "max_steps"),
    "per_device_train_batch_size": ("per_device_train_batch_size", "micro_batch_size", "per_device_train_batch_size"),
    "gradient_accumulation_steps": (
        "gradient_accumulation_steps",
        "gradient_accumulation_steps",
        "gradient_accumulation_steps",
    ),
    "learning_rate": ("learning_rate", "learning_rate", "learning_rate"),
    "lr_scheduler_type": ("lr_scheduler_type", "lr_scheduler", "lr_scheduler_type"),
    "warmup_ratio": ("warmup_ratio", "warmup_ratio", "warmup_ratio"),
    "weight_decay": ("weight_decay", "weight_decay", "weight_decay"),
    "logging_steps": ("logging_steps", "logging_steps", "logging_steps"),
    "eval_steps": ("eval_steps", "eval_steps", "eval_steps"),
    "seed": ("seed", "seed", "seed"),
    "beta": ("pref_beta", "rl_beta", "beta"),
}
TOOLS = ("llamafactory", "axolotl", "ms-swift")
# (LLaMA-Factory template, markers a chat template must contain), most specific first.
LLAMAFACTORY_TEMPLATES = (
    ("qwen3", ("<|im_start|>", "enable_thinking")),
    ("qwen", ("<|im_start|>", "You are Qwen")),
    ("chatml", ("<|im_start|>",)),
    ("llama3", ("<|start_header_id|>",)),
    ("gemma", ("<start_of_turn>",)),
    ("mistral", ("[INST]",)),
    ("phi", ("<|user|>", "<|end|>")),
    ("glm4", ("[gMASK]",)),
)


IGNORE = -100
# LLaMA-Factory's collator pads input_ids and attention_mask to a multiple of this, never position_ids: packed
# rows are written already that long, so it pads nothing.
LLAMAFACTORY_MULTIPLE = 8
# Where each tool's pre-tokenized SFT rows go, under its hand-off folder.
DATA_DIRS = {"llamafactory": "tokenized", "axolotl": "data"}


def write_handoff(
    loaded: LoadedRecipe,
    train: Train,
    data: TrainingData,
    template: str | None,
    folder: Path,
    *,
    pad_token_id: int | None = None,
) -> tuple[list[Path], list[str]]:
    """Write the hand-off files into `folder` (`template`: the target's chat template, which LLaMA-Factory's
    template name is chosen for; `pad_token_id`: the tokenizer's, for padding LLaMA-Factory's packed rows, 0
    when not given — padding is masked out of attention and loss, so its id never trains); (config files
    written, trainers skipped with the reason). For SFT each config's pre-tokenized rows are written into the
    folder it names (`DATA_DIRS`, beside it)."""
    written: list[Path] = []
    skipped: list[str] = []
    header = (
        f"# Generated by `dataforge train {loaded.path.name}`: {train.method} of {train.model} on the build in "
        f"{data.dir} (manifest sha256 {data.manifest_sha256[:16]}).\n"
    )
    untranslated = [k for k in train.args if k not in ARGUMENTS]
    if untranslated:  # said, not silently dropped
        header += f"# train.args without a counterpart here (not carried): {', '.join(untranslated)}\n"
    kind = EXPORT_KIND[train.method]
    model = _model(loaded, train)
    for tool in TOOLS:
        exports = data.dir / "exports" / tool
        if not exports.is_dir():
            skipped.append(f"{tool}: the build has no {tool} export (add it to outputs.exports)")
            continue
        here = folder / tool
        if tool == "llamafactory":
            files = _llamafactory(loaded, train, model, data, exports, kind, template, here)
        else:
            files = (_axolotl if tool == "axolotl" else _swift)(loaded, train, model, data, exports, kind, here)
        if files is None:
            skipped.append(f"{tool}: the {tool} export has no {kind} rows")
            continue
        # SFT's rows go beside the config, which names their folder (the folder is not listed: only configs are)
        notes = ""
        if train.method == "sft":
            notes = (
                _write_rows(tool, data, here / DATA_DIRS[tool], pad_token_id)
                if tool in DATA_DIRS
                else _swift_notes(data)
            )
        for name, text in files.items():
            path = here / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith(".sh"):  # the shebang stays the first line
                first, rest = text.split("\n", 1)
                text = f"{first}\n{header}{notes}{rest}"
            elif not name.endswith(".json"):  # JSON has no comments
                text = header + notes + text
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written, skipped


def _packs(train: Train, data: TrainingData) -> bool:
    return train.method == "sft" and data.spec.pack is not None and data.packed is not None


def _pack_length(data: TrainingData) -> int:
    assert data.spec.pack is not None
    return data.spec.pack.max_length or data.spec.max_length


def llamafactory_row_length(data: TrainingData) -> int:
    """The length every packed LLaMA-Factory row is padded to: past the pack length (LLaMA-Factory's own packed
    rows always end in padding), rounded up to its collator's multiple of 8."""
    need = _pack_length(data) + 1
    return -(-need // LLAMAFACTORY_MULTIPLE) * LLAMAFACTORY_MULTIPLE


# ------------------------------------------------------------------------------------ pre-tokenized SFT rows


def sft_rows(data: TrainingData, split: str) -> pa.Table:
    """The split's rendered rows an SFT run trains on (conversations and plain text), in build order."""
    return data.rendered_rows(split, KINDS["sft"])


def _write_rows(tool: str, data: TrainingData, where: Path, pad_token_id: int | None) -> str:
    """Write `tool`'s pre-tokenized SFT datasets into `where` (replaced whole); the header lines saying what the
    rows are and what the tool cannot take."""
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    rows = {split: sft_rows(data, split) for split in ("train", "val")}
    packed = tool == "llamafactory" and data.packed is not None
    if tool == "llamafactory":
        pad = 0 if pad_token_id is None else pad_token_id
        tables = {
            name: (llamafactory_packed(data.packed[split], llamafactory_row_length(data), pad) if packed
                   else _unpacked(rows[split]))
            for split, name in (("train", "train"), ("val", "validation"))
        }  # fmt: skip
        _save_dict(tables, where)
    else:
        for split, table in rows.items():
            _write_parquet(_unpacked(table), where / f"{split}.parquet")
    return _notes(tool, data, rows, packed)


def _unpacked(rows: pa.Table) -> pa.Table:
    """Rendered rows as `input_ids`, `attention_mask` (all ones), `labels`."""
    ids = rows["input_ids"].combine_chunks() if rows.num_rows else pa.array([], pa.list_(pa.int32()))
    lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    ones = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.ones(int(lengths.sum()), np.int32)))
    return pa.table({"input_ids": ids, "attention_mask": ones, "labels": _column(rows, "labels")})


def _column(rows: pa.Table, name: str) -> pa.Array:
    return rows[name].combine_chunks() if rows.num_rows else pa.array([], pa.list_(pa.int32()))


def llamafactory_packed(packed: pa.Table, length: int, pad_token_id: int) -> pa.Table:
    """dataforge's packed rows in LLaMA-Factory's `neat_packing` layout, each padded to `length` tokens:
    `input_ids` (pad id after the segments), `attention_mask` (segment ids 1..k, 0 on padding), `position_ids`
    (restarting at 0 per segment, 0 on padding), `labels` (-100 on padding and at every segment start)."""
    n = packed.num_rows
    tokens = pc.list_value_length(packed["input_ids"]).to_numpy(zero_copy_only=False).astype(np.int64)
    if np.any(tokens >= length):
        raise ValueError(f"a packed row holds {int(tokens.max())} tokens; LLaMA-Factory rows are {length} long")
    total = int(tokens.sum())
    # Token j of row r goes to r * length + (j - start of row r): one gather for every column.
    where = np.repeat(np.arange(n, dtype=np.int64) * length - np.r_[0, np.cumsum(tokens)[:-1]], tokens)
    where += np.arange(total, dtype=np.int64)
    segments = _flat(packed, "seq_lengths").astype(np.int64)
    per_row = pc.list_value_length(packed["seq_lengths"]).to_numpy(zero_copy_only=False).astype(np.int64)
    first = np.r_[0, np.cumsum(per_row)[:-1]]
    segment_ids = np.arange(len(segments), dtype=np.int64) - np.repeat(first, per_row) + 1

    def spread(values: np.ndarray, fill: int) -> pa.Array:
        out = np.full(n * length, fill, dtype=np.int32)
        out[where] = values
        offsets = pa.array(np.arange(n + 1, dtype=np.int32) * length)
        return pa.ListArray.from_arrays(offsets, pa.array(out, pa.int32()))

    return pa.table(
        {
            "input_ids": spread(_flat(packed, "input_ids"), pad_token_id),
            "attention_mask": spread(np.repeat(segment_ids, segments), 0),
            "position_ids": spread(_flat(packed, "position_ids"), 0),
            "labels": spread(_flat(packed, "labels"), IGNORE),
        }
    )


def _flat(table: pa.Table, name: str) -> np.ndarray:
    column = table[name]
    return _flat_array(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)


def _flat_array(column: pa.Array) -> np.ndarray:
    return pc.list_flatten(column).to_numpy(zero_copy_only=False)


def loss_weights(rows: pa.Table) -> pa.Array | None:
    """The rows' per-token loss weights (`loss_weights`, written by `train_on: weighted`), a row without them
    given 1.0 on its trained tokens and 0.0 elsewhere; None when no row has any."""
    if "loss_weights" not in rows.column_names or not rows.num_rows:
        return None
    column = _column(rows, "loss_weights")
    if column.null_count == len(column):
        return None
    labels = _column(rows, "labels")
    # Rows without weights (kinds the mode does not weigh): 1.0 on each trained token, 0.0 elsewhere.
    ones = (_flat_array(labels) != IGNORE).astype(np.float32)
    sizes = pc.list_value_length(labels).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = pa.array(np.r_[0, np.cumsum(sizes)].astype(np.int32))  # from 0: `labels` may be a slice
    default = pa.ListArray.from_arrays(offsets, pa.array(ones, pa.float32()))
    return pc.if_else(column.is_null(), default, column.cast(pa.list_(pa.float32())))


def _dataset(table: pa.Table) -> Any:
    """A `datasets.Dataset` over `table` whose fingerprint is the digest of its rows (datasets would otherwise
    draw a random one and write it to state.json, so the same build would not give the same bytes)."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    digest = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]
    return Dataset(InMemoryTable(table), fingerprint=digest)


def _save_dict(tables: dict[str, pa.Table], path: Path) -> None:
    from datasets import DatasetDict

    # An empty validation split is left out: LLaMA-Factory would evaluate on nothing.
    splits = DatasetDict({name: _dataset(t) for name, t in tables.items() if name == "train" or t.num_rows})
    with _quiet():
        splits.save_to_disk(str(path))


@contextmanager
def _quiet() -> Iterator[None]:
    """datasets' progress bars off while saving (they would interleave with dataforge's own output)."""
    from datasets.utils import logging as ds_logging

    was = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            ds_logging.enable_progress_bar()


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, str(path), compression="zstd")


def _notes(tool: str, data: TrainingData, rows: dict[str, pa.Table], packed: bool) -> str:
    """The header lines of an SFT hand-off: the rows, the labels' training mode, packing and attention, and
    the loss weights the tool cannot take."""
    from ..pack import ISOLATION

    spec = data.spec
    counts = ", ".join(f"{rows[s].num_rows} {s}" for s in ("train", "val"))
    mode = spec.train_on + (f" (first_n: {spec.first_n})" if getattr(spec, "first_n", None) else "")
    lines = [
        f"data: dataforge's rendered rows of target {spec.name!r} ({counts}), pre-tokenized: the labels carry "
        f"train_on: {mode} and every turn weight 0 exactly (-100 on each untrained token); no re-templating"
    ]
    if spec.pack is not None and data.packed is not None:
        stated = _measured(data)
        if packed:
            length = llamafactory_row_length(data)
            tokens = sum(int(pc.sum(data.packed[s]["n_tokens"]).as_py() or 0) for s in ("train", "val"))
            bins = sum(data.packed[s].num_rows for s in ("train", "val"))
            lines.append(
                f"packing: dataforge's own packed rows ({bins} rows of up to {_pack_length(data)} tokens, "
                f"{stated}), padded to {length}: {tokens / (bins * length) if bins else 0:.2%} of what is computed"
            )
        else:
            lines.append(_predicted(tool, data))
        lines.append(f"attention: {ISOLATION[tool]}")
        if packed:
            lines.append(
                "attention: with flash_attention_2, LLaMA-Factory's neat_packing takes one packed row per device "
                "batch (per_device_train_batch_size: 1; it asserts so)"
            )
    lines += _weight_notes(tool, rows)
    return "".join(f"# {line}\n" for line in lines)


def _measured(data: TrainingData) -> str:
    measured = data.manifest.get("render", {}).get(data.spec.name, {}).get("pack") or {}
    share = measured.get("efficiency")
    return f"{share:.2%} efficiency ({measured.get('strategy')})" if share is not None else "efficiency unknown"


def _predicted(tool: str, data: TrainingData) -> str:
    return (
        f"packing: predicted {_measured(data)} at {_pack_length(data)} tokens (dataforge's bins); {tool} packs "
        "these rows itself with its own algorithm, so its efficiency can differ a little"
    )


def _swift_notes(data: TrainingData) -> str:
    """The header lines of the ms-swift SFT hand-off, which trains on the export (ms-swift re-encodes)."""
    from ..pack import ISOLATION

    spec = data.spec
    lines = [
        "data: the ms-swift export (chat messages; ms-swift takes no pre-tokenized rows and encodes with its own "
        "template for the model); each turn's weight is in its `loss` / `loss_scale` field"
    ]
    if spec.train_on == "first_n":
        lines.append(
            f"not carried: train_on: first_n (first_n: {spec.first_n}) has no ms-swift counterpart; it trains "
            "every assistant turn not marked loss: false"
        )
    if spec.train_on != "weighted":
        scaled = _scaled_turns(data.dir / "exports" / "ms-swift" / "sft")
        if scaled:
            lines.append(
                f"turn weights: {scaled} assistant turns carry a loss_scale other than 1 in the export, which "
                f"ms-swift applies; with train_on: {spec.train_on} dataforge trains them at full weight (remove "
                "loss_scale from the messages to match)"
            )
    if spec.pack is not None and data.packed is not None:
        lines += [_predicted("ms-swift", data), f"attention: {ISOLATION['ms-swift']}"]
    return "".join(f"# {line}\n" for line in lines)


def _scaled_turns(folder: Path) -> int:
    """Messages with a `loss_scale` in the ms-swift export's SFT files (read line by line)."""
    count = 0
    for split in ("train", "val"):
        path = folder / f"{split}.jsonl"
        if path.is_file():
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    if '"loss_scale"' in line:  # most lines have none: parse only those that might
                        count += sum("loss_scale" in m for m in json.loads(line).get("messages", ()))
    return count


def _weight_notes(tool: str, rows: dict[str, pa.Table]) -> list[str]:
    """What becomes of per-token loss weights (`loss_weights`, train_on: weighted) in `tool`'s rows."""
    scaled = 0
    for table in rows.values():
        weights = loss_weights(table)
        if weights is not None:
            trained = _flat(table, "labels") != IGNORE
            scaled += int(np.count_nonzero(trained & (_flat_array(weights) != 1.0)))
    if not scaled:
        return []
    return [
        f"loss weights: {scaled} trained tokens weigh other than 1 (loss_weights); {tool} takes no per-token "
        "weights from these files, so they train at weight 1 here (weight 0 is -100 in the labels: not trained)"
    ]


def _arguments(train: Train, which: int) -> dict[str, Any]:
    """`train.args` that the tool takes, under its own names (0 LLaMA-Factory, 1 axolotl, 2 ms-swift)."""
    return {ARGUMENTS[k][which]: v for k, v in train.args.items() if k in ARGUMENTS}


def _model(loaded: LoadedRecipe, train: Train) -> str:
    """The model as the tools name it: a local directory as an absolute path (they run from elsewhere), a
    ModelScope id without the `ms://` scheme, a hub id as it is."""
    if train.model.startswith("ms://"):
        return train.model.removeprefix("ms://")
    path = Path(train.model)
    local = path if path.is_absolute() else loaded.root / path
    return str(local.resolve()) if local.is_dir() else train.model


def _alpha(train: Train) -> int | float:
    return int(train.peft.alpha) if float(train.peft.alpha).is_integer() else train.peft.alpha


def _llamafactory(
    loaded: LoadedRecipe,
    train: Train,
    model: str,
    data: TrainingData,
    exports: Path,
    kind: str,
    template: str | None,
    here: Path,
) -> dict[str, str] | None:
    """train.yaml + its dataset_info.json (in `here`, the YAML's dataset_dir): the export's entries for `kind`,
    whose absolute file_name LLaMA-Factory joins to dataset_dir unchanged."""
    info = json.loads((exports / "dataset_info.json").read_text(encoding="utf-8"))
    names = {split: f"{loaded.recipe.name}_{kind}_{split}" for split in ("train", "val")}
    entries = {
        name: {**info[name], "file_name": str(exports / info[name]["file_name"])}
        for name in names.values()
        if name in info
    }
    if names["train"] not in entries:
        return None
    config: dict[str, Any] = {
        "model_name_or_path": model,
        "trust_remote_code": train.trust_remote_code,
        "stage": train.method,
        "do_train": True,
        "finetuning_type": "full" if train.peft.type == "none" else "lora",
    }
    if train.peft.type != "none":
        targets = train.peft.target_modules
        config |= {
            "lora_rank": train.peft.r,
            "lora_alpha": _alpha(train),
            "lora_dropout": train.peft.dropout,
            "lora_target": "all" if targets == "all-linear" else ",".join(targets),
        }
    if train.peft.type == "qlora":
        config |= {"quantization_bit": 4, "quantization_method": "bnb", "double_quantization": True}
    config |= {
        "dataset_dir": str(here),
        "dataset": names["train"],
        **({"eval_dataset": names["val"]} if names["val"] in entries else {}),
        # LLaMA-Factory formats with its own templates; this one is the closest to the target's (check it).
        "template": llamafactory_template(template),
        "cutoff_len": data.spec.max_length,
    }
    if train.method == "sft":
        # The build's own tokens (see the module doc); `dataset` above is the fallback, ignored while this holds
        # data. mask_history is what train_on: last means for that fallback (the tokens carry it already).
        config["tokenized_path"] = str(here / DATA_DIRS["llamafactory"])
        if data.spec.train_on == "last":
            config["mask_history"] = True
    if _packs(train, data):
        # dataforge's packed rows, each segment attending only to itself (segment ids in attention_mask), all
        # as long as cutoff_len, the length LLaMA-Factory gives its own packed rows.
        config |= {"packing": True, "neat_packing": True, "cutoff_len": llamafactory_row_length(data)}
    config |= {
        "output_dir": str(_tool_output(loaded, train, "llamafactory")),
        "bf16": True,
        "report_to": "none",
        **_arguments(train, 0),
    }
    return {
        "train.yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "dataset_info.json": json.dumps(entries, indent=2, ensure_ascii=False) + "\n",
    }


def llamafactory_template(template: str | None) -> str:
    """The LLaMA-Factory template closest to a chat template, recognised by its turn markers ("default" when
    none is recognised: set it by hand)."""
    text = template or ""
    for name, markers in LLAMAFACTORY_TEMPLATES:
        if all(m in text for m in markers):
            return name
    return "default"


def _axolotl(
    loaded: LoadedRecipe, train: Train, model: str, data: TrainingData, exports: Path, kind: str, here: Path
) -> dict[str, str] | None:
    path = exports / f"axolotl-{kind}.yaml"
    if not path.is_file():
        return None
    if train.method == "sft":
        # axolotl's pre-tokenized form: no `type:`, the rows used as they are.
        folder = here / DATA_DIRS["axolotl"]
        blocks: dict[str, Any] = {"datasets": [_parquet_block(folder / "train.parquet")]}
        if sft_rows(data, "val").num_rows:
            blocks["test_datasets"] = [_parquet_block(folder / "val.parquet")]
    else:
        blocks = yaml.safe_load(path.read_text(encoding="utf-8"))
        for key in ("datasets", "test_datasets"):
            for block in blocks.get(key, []):
                block["path"] = str(exports / block["path"])
    config: dict[str, Any] = {
        "base_model": model,
        "trust_remote_code": train.trust_remote_code,
        "chat_template": "tokenizer_default",
        **blocks,
        "dataset_prepared_path": str(_tool_output(loaded, train, "axolotl") / "prepared"),
        "output_dir": str(_tool_output(loaded, train, "axolotl")),
        "sequence_len": data.spec.max_length,
        "bf16": "auto",
    }
    if _packs(train, data):  # multipack over the pre-tokenized rows; flash attention keeps the rows apart
        config |= {"sequence_len": _pack_length(data), "sample_packing": True, "pad_to_sequence_len": True,
                   "flash_attention": True}  # fmt: skip
    if train.peft.type != "none":
        config |= {
            "adapter": train.peft.type,
            "lora_r": train.peft.r,
            "lora_alpha": _alpha(train),
            "lora_dropout": train.peft.dropout,
        }
        targets = train.peft.target_modules
        config |= {"lora_target_linear": True} if targets == "all-linear" else {"lora_target_modules": list(targets)}
    if train.peft.type == "qlora":
        config["load_in_4bit"] = True
    config |= _arguments(train, 1)
    return {"config.yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True)}


def _parquet_block(path: Path) -> dict[str, Any]:
    return {"path": str(path), "ds_type": "parquet", "split": "train"}


def _swift(
    loaded: LoadedRecipe, train: Train, model: str, data: TrainingData, exports: Path, kind: str, here: Path
) -> dict[str, str] | None:
    files = {split: exports / kind / f"{split}.jsonl" for split in ("train", "val")}
    if not files["train"].is_file():
        return None
    command = ["swift", "sft"] if train.method == "sft" else ["swift", "rlhf", "--rlhf_type", train.method]
    args: dict[str, Any] = {
        "model": model,
        "use_hf": "false" if train.model.startswith("ms://") else "true",
        "train_type": "full" if train.peft.type == "none" else "lora",
    }
    args["dataset"] = str(files["train"])
    if files["val"].is_file() and files["val"].stat().st_size:
        args["val_dataset"] = str(files["val"])
    if train.method == "sft" and data.spec.train_on == "last":
        args["loss_scale"] = "last_round"  # train_on: last (turn weights stay in the export's messages)
    if train.peft.type != "none":
        targets = train.peft.target_modules
        args |= {
            "lora_rank": train.peft.r,
            "lora_alpha": _alpha(train),
            "lora_dropout": train.peft.dropout,
            "target_modules": targets if isinstance(targets, str) else " ".join(targets),
        }
    if train.peft.type == "qlora":
        args |= {
            "quant_method": "bnb",
            "quant_bits": 4,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": "true",
            "bnb_4bit_compute_dtype": "bfloat16",
        }
    args |= {
        "torch_dtype": "bfloat16",
        "max_length": data.spec.max_length,
        **(
            {"max_length": _pack_length(data), "packing": "true", "attn_impl": "flash_attn"}
            if _packs(train, data)
            else {}
        ),
        "output_dir": str(_tool_output(loaded, train, "ms-swift")),
        **_arguments(train, 2),
    }
    lines = [" ".join(command) + " \\"]
    for key, value in args.items():
        # target_modules takes several words: one argument each, unquoted as a group.
        words = str(value).split() if key == "target_modules" else [str(value)]
        lines.append(f"  --{key} {' '.join(shlex.quote(w) for w in words)} \\")
    lines[-1] = lines[-1].removesuffix(" \\")
    return {"train.sh": "#!/bin/sh\n" + "\n".join(lines) + "\n"}


def _tool_output(loaded: LoadedRecipe, train: Train, tool: str) -> Path:
    from .run import output_dir_of

    return output_dir_of(loaded, train) / "handoff" / tool / "output"
