"""Agents: named system prompts with a chat of their own."""
