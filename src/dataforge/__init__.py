"""dataforge: prepare, validate, deduplicate, mix and render LLM fine-tuning data in one reproducible build."""

__version__ = "0.1.0"
