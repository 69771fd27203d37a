"""``python -m streamapp ...`` runs the Faust command line of the app."""

from __future__ import annotations

from streamapp.app import app


def main() -> None:
    """Run the Faust CLI (``worker``, ``replay``, ``redrive``, ...) for the app."""
    app.main()


if __name__ == "__main__":
    main()
