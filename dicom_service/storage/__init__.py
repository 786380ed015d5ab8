"""Instance stores: one protocol, interchangeable back ends."""

from dicom_service.storage.base import InstanceKey, InstanceStore, PendingPut, StoredObject
from dicom_service.storage.filesystem import FilesystemStore

__all__ = ["FilesystemStore", "InstanceKey", "InstanceStore", "PendingPut", "StoredObject"]
