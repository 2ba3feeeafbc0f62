"""LLM serving: the OpenAI-compatible gateway (``gateway``), its pure routing policies
(``policies``) and the reading of engines' Prometheus metrics (``engine``)."""
