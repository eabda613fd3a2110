"""Envelope encryption of MLflow artifacts at rest (OWASP ML05: a copied model is useless).

Every artifact gets a fresh data key (a Tink streaming-AEAD keyset, AES256-GCM-HKDF with 1 MiB
segments), wrapped by a key-encryption key (KEK: a Tink AEAD keyset in a local file, or a KMS
behind :class:`mlflow_guard.encryption.kek.KeyEncryptionKey`). Rotation re-wraps data keys
without touching the encrypted data. This package imports Tink; the pure core never does.
"""
