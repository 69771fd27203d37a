"""Faust agents of streamapp: fetch, validate, store (autodiscovered by the app)."""
