"""Deployment: export a trained Transformer to CTranslate2, and translate with the export."""
