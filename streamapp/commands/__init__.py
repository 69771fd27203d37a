"""Faust commands of streamapp (``faust -A streamapp <command>``), one module each."""
