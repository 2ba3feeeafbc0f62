"""Operations: the doctor (findings with evidence and a fix), start-time estimates, Prometheus
metrics and the MCP server.

Sits between the API and the controllers: it reads the control plane's read side (views,
specs, node health) and runs the pure scheduler on snapshots of its own; it writes nothing.
Must not import api, client or cli.
"""
