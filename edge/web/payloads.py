"""The JSON the web API answers with, built from the classifier's and decider's plain objects.

Usage:
    from edge.web.payloads import classification, model_block
    body = classification(prediction, decision, server_ms=12.5)
"""

from __future__ import annotations

import base64
from typing import Any

RECENT_FIELDS = ("id", "ts", "label", "confidence", "bin", "rejected", "truth", "thumbnail_jpeg_b64")


def model_block(classifier) -> dict[str, Any]:
    """What the page shows about the model: name, identity and the test figures from its manifest."""
    bundle = classifier.bundle
    manifest = bundle.manifest
    return {
        "name": bundle.name,
        "path": str(bundle.path),
        "sha256": manifest.sha256,
        "backbone": manifest.backbone,
        "quantization": manifest.quantization,
        "labels": list(classifier.labels),
        "views": list(getattr(classifier, "views", ("original",))),
        "metrics": manifest.metrics,
    }


def recent_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """One of the status page's recent items; its thumbnail is encoded on the first look.

    Thumbnails are encoded when someone looks, not per item, to keep the sorting loop lean. Several
    web threads may look at once: the thumbnail is stored before the frame is dropped, so none
    of them can see neither.
    """
    image = entry.get("_image")
    if image is not None:
        from edge import imaging
        entry["thumbnail_jpeg_b64"] = base64.b64encode(
            imaging.encode_jpeg(image, quality=70, max_side=160)).decode("ascii")
        entry.pop("_image", None)
    return {key: entry.get(key) for key in RECENT_FIELDS}


def decider_block(decider) -> dict[str, Any]:
    """The sorting rules the page needs to explain a verdict (threshold, bins, reject bin)."""
    return {
        "min_confidence": getattr(decider, "min_confidence", None),
        "bins": dict(getattr(decider, "bins", {}) or {}),
        "reject_bin": getattr(decider, "reject_bin", None),
    }


def classification(prediction, decision, server_ms: float, min_confidence: float | None = None) -> dict[str, Any]:
    """The answer to ``POST /api/classify``.

    ``latency_ms`` is the classifier's own time (resize + inference); ``server_ms`` adds
    reading and decoding the upload, which is what a user waits for on the server side.
    """
    return {
        "label": prediction.label,
        "confidence": round(float(prediction.confidence), 6),
        "bin": decision.bin,
        "rejected": bool(decision.rejected),
        "min_confidence": min_confidence,
        "probabilities": {label: round(float(p), 6) for label, p in prediction.probabilities.items()},
        "top3": [_ranked(entry) for entry in prediction.top3],
        "latency_ms": round(float(prediction.latency_ms), 3),
        "invoke_ms": round(float(getattr(prediction, "invoke_ms", prediction.latency_ms)), 3),
        "server_ms": round(server_ms, 3),
    }


def _ranked(entry) -> dict[str, Any]:
    # The classifier gives (label, p) pairs; JSON readers want named fields.
    if isinstance(entry, dict):
        return {"label": entry["label"], "confidence": round(float(entry["confidence"]), 6)}
    label, confidence = entry
    return {"label": label, "confidence": round(float(confidence), 6)}
