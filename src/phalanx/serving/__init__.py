"""Serving: the router (data plane), the autoscaler (a pure decision function), the model
server (Open Inference Protocol V2) and the Service controller.

``endpoints`` is the contract between the Service controller (which knows replicas, revisions
and traffic) and the router (which moves requests): routes in, load and demand out.
"""
