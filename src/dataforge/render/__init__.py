"""Rendering through chat templates: targets, trained spans, token ids and labels."""
