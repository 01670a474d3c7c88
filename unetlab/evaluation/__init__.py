"""Evaluation: metrics from confusion counts (`metrics`), validation during training (`validation`), and the scores
of `unetlab eval` on a labelled folder (`report`)."""
