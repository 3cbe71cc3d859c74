"""Optical character recognition."""
