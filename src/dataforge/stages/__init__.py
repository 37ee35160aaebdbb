"""Stages: functions over tables, one module each, assembled into a graph by `dataforge.engine.graph`."""
