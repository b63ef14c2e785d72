"""Annotators: where labels come from, behind one small interface."""

from al_loop.annotators.base import Annotation, Annotator, PullResult, TaskRequest
from al_loop.annotators.simulated import SimulatedAnnotator

__all__ = ["Annotation", "Annotator", "PullResult", "SimulatedAnnotator", "TaskRequest"]
