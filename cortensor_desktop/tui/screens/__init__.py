"""The dashboard's screens besides the main one, one module each (models, wallet, settings)."""
