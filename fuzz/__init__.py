"""Fuzzing the decoders a remote party reaches: ``make fuzz``."""
