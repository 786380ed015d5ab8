"""DICOM value objects and helpers: UIDs and named statuses."""
