"""Instance stores: one protocol, interchangeable back ends."""

from dicom_service.storage.base import InstanceKey, InstanceStore, StoredObject
from dicom_service.storage.filesystem import FilesystemStore

__all__ = ["FilesystemStore", "InstanceKey", "InstanceStore", "StoredObject"]
