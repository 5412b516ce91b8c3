"""Fraud detection and review: explainable detectors, risk modes, the moderators' queue.

Every flag records its detector, a score and a one-line reason; docs/fraud.md explains each.
"""
