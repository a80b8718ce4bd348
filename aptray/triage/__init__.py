"""Triage: turning scored alerts into items an analyst can act on (incidents; explanations in later work)."""
