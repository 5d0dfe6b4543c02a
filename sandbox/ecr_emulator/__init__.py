"""A local Amazon ECR emulator: the ECR JSON API subset and a `/v2` registry with pull through cache.

Independent of the ``ecr_mirror`` package it is meant to check. See ``docs/emulator.md``.
"""
