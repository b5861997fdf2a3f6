"""Text as a first-class input: subword tokenization and sequence decoding."""
