"""`docker compose` for real: the image, the compose files and the stand-ins."""
