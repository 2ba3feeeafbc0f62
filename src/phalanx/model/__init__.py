"""Domain types: resources and quantities, nodes, flavors, queues, jobs and their states.

Pure: imports nothing outside the standard library.
"""
