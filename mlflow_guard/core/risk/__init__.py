"""Pure metric math for the risk evaluator (stdlib only, so promotion gates can reuse it)."""
