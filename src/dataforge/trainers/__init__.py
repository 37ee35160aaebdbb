"""The bundled training stage: trl's SFT, DPO and KTO trainers with PEFT LoRA/QLoRA, on a build's own data.

* `run` — `dataforge train`: build up to date, checks, hand-off configs, training, outputs;
* `build` — the build's rendered rows and canonical examples, checked against its manifest;
* `checks` — what refuses to start (kind vs method, untrained rows, tokenizer, vocabulary, trl's tokenization);
* `config` — trl configs from `train.args`, the base model; `lora` — LoRA and 4-bit NF4 (QLoRA) settings;
* `sft`, `dpo`, `kto` — one module per method: its datasets and its trl trainer (`records`: shared by DPO/KTO);
* `handoff` — LLaMA-Factory, axolotl and ms-swift configs on the build's exports;
* `merge` — `dataforge merge`: an adapter folded into its base model.

torch, trl and peft are imported inside the functions that use them, so the CLI starts without them.
"""
