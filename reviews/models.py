"""Review tasks and decisions arrive with the human-gates work (issue 5)."""
