"""Faust agents of streamapp: fetch, validate, store (discovered by ``streamapp.app``)."""
