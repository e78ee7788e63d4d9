"""Experiments: table specs -> stages (teachers, soft targets, students, ensembles) -> cached runs -> tidy results."""
