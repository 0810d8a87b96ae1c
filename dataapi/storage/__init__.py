"""The artifact store: ``base`` (the interface), ``local`` (a directory), ``s3`` (any S3-compatible service),
``factory`` (the store the settings name)."""
