"""Experiment readouts: sufficient statistics from the warehouse, inference in pure Python."""
