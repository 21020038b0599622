"""A corpus of malformed (and awkward but valid) inputs: each builder writes one dataset into
a folder and returns (data.path, extra overrides, regex the error must match)."""
