"""LLM clients (OpenAI-compatible, replay), reward-code prompts and the Eureka-style search."""
