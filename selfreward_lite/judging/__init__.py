"""LLM-as-a-Judge: rubrics, score parsing and the judging engine."""
