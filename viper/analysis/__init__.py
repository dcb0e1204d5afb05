"""Analyses of trained models for the paper report: reasoning words and attention maps."""
