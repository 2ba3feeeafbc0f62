"""Substrates that run pods: ``local`` (this machine), later ``kubernetes`` and ``sim``.

Everything above a backend is the same for all substrates; see ``base.Backend``.
"""
