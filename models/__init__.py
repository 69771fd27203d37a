"""Records and validation of the pipeline's messages."""
