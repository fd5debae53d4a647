"""Simulated modalities, serial dosimeters and a central receiver, for the demo and the tests."""
