"""Prometheus metrics. Labels never carry identifiers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INSTANCES_STORED = Counter("dicom_service_instances_stored",
                           "Instances de-identified, stored and indexed")
INSTANCES_REFUSED = Counter("dicom_service_instances_refused",
                            "Instances refused, by reason", ["reason"])
INGEST_SECONDS = Histogram("dicom_service_ingest_seconds",
                           "Time from a decoded data set to a durable, indexed instance",
                           buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
ASSOCIATIONS_ACTIVE = Gauge("dicom_service_associations_active",
                            "DICOM associations currently open", multiprocess_mode="livesum")
ASSOCIATIONS_REJECTED = Counter("dicom_service_associations_rejected",
                                "Associations rejected, by reason", ["reason"])
