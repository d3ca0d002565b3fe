"""One DICOM Structured Report per worklist row: the triage result, back into the study.

A highdicom `Comprehensive3DSR` with TID 1500 (Measurement Report) content, in its own
series of the study it reports on:

- observer: a Device (the triage model), with the algorithm identification (model name
  and version; rules version and calibration temperature as parameters);
- one measurement group (TID 1501) referencing the instances of the classified series,
  holding the route as a coded qualitative evaluation, the calibrated probability as a
  measurement (no units) when the model scored the study, and as text the reasons, the
  rule ids, the guarantee (worklist column ``guarantee``, where present) and, for a failed
  study, why it failed;
- evidence: the source series (CurrentRequestedProcedureEvidenceSequence).

The series and SOP Instance UIDs derive from the study, the model version, the rules
version and the instances triaged: a rerun makes the same SR (no duplicate in the PACS),
while a study that grew since (the listener got more instances) gets a new one, which names
the SR it replaces (PredecessorDocumentsSequence) when that one is known.

Patient and study attributes are copied from the study without the values DICOM refuses
(`triage.pacs.sr_header`); no value of them reaches a log.

Local concepts use the private coding scheme ``99TRIAGE`` (see docs/pacs.md). The SR
flags; it never removes a study from a reading worklist (CADt).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from triage.pacs.sr_header import quiet, study_header
from triage.run.worklist import WorklistRow

LOGGER = logging.getLogger(__name__)

SCHEME = "99TRIAGE"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SR_SERIES_NUMBER = 9901
SR_SERIES_DESCRIPTION = "triage result (CADt, not for diagnosis)"
MANUFACTURER = "triage"


def derived_uid(*parts: str) -> str:
    """A UID under the ``2.25`` root from a hash of `parts` (deterministic, <= 64 chars).

    Example:
        >>> derived_uid("1.2.3", "v1") == derived_uid("1.2.3", "v1")
        True
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _codes() -> dict[str, Any]:
    from pydicom.sr.coding import Code

    return {
        "route": Code("route", SCHEME, "Triage route"),
        "p": Code("p-calibrated", SCHEME, "Calibrated probability of a finding"),
        "reasons": Code("reasons", SCHEME, "Triage reasons"),
        "rules": Code("rule-ids", SCHEME, "Triage rule identifiers"),
        "guarantee": Code("guarantee", SCHEME, "Triage guarantee"),
        "failure": Code("failure", SCHEME, "Triage failure reason"),
        "procedure": Code("363679005", "SCT", "Imaging procedure"),
        "unitless": Code("1", "UCUM", "no units"),
    }


ROUTE_MEANINGS = {"urgent": "Urgent", "routine": "Routine", "review": "Review",
                  "failed": "Failed"}


def route_code(route: str):
    """The coded value of a route (``99TRIAGE``)."""
    from pydicom.sr.coding import Code

    return Code(route, SCHEME, ROUTE_MEANINGS.get(route, route.capitalize() or "Unknown"))


def _evidence(record: dict) -> list:
    """Header-only datasets of the study's instances (patient and study attributes, series
    and SOP UIDs): what highdicom copies and references."""
    from pydicom import Dataset

    study, left_out = study_header(record.get("study") or {})
    if left_out:
        LOGGER.warning("Study %s: %s left out of its SR (a value DICOM does not allow).",
                       record["study_uid"], ", ".join(left_out))
    study.StudyInstanceUID = record["study_uid"].split("#")[0]
    out = []
    for series_uid, instances in sorted(record.get("series", {}).items()):
        for sop_class, sop_uid in instances:
            ds = Dataset()
            ds.update(study)
            ds.SeriesInstanceUID, ds.SOPClassUID, ds.SOPInstanceUID = (series_uid, sop_class,
                                                                       sop_uid)
            out.append(ds)
    return out


class ReportError(ValueError):
    """No SR can be made for this row (a pseudo-study, nothing known of its instances)."""


def build_sr(row: WorklistRow, record: dict | None, *, guarantee: str = "",
             sent: Sequence[Sequence[str]] = ()):
    """The SR of one worklist row.

    Args:
        row: the study's worklist row.
        record: the study's header record (`triage.pacs.headers.HeaderStore.load`).
        guarantee: what covers the route (the ``guarantee`` column, when the worklist has
            one).
        sent: SRs of the study already stored, ``(series UID, SOP Instance UID)``, oldest
            first (`triage.pacs.headers.HeaderStore.sent`): a new SR names the last one
            as the document it replaces.

    Raises:
        ReportError: the row has no real study, or no instance of it is known.
        ValueError: highdicom refused the content (a bug, or a header it cannot take).
    """
    with quiet() as notes:
        sr = _build(row, record, guarantee, sent)
    if notes:
        LOGGER.debug("Study %s: building its SR: %s", row.study_uid, "; ".join(notes))
    return sr


def _predecessor(study_uid: str, sent: Sequence[Sequence[str]], sop_uid: str) -> list:
    """The last SR stored that is not `sop_uid`, as highdicom's ``previous_versions``."""
    from pydicom import Dataset

    earlier = [pair for pair in sent if pair[1] != sop_uid]
    if not earlier:
        return []
    previous = Dataset()
    previous.StudyInstanceUID = study_uid
    previous.SeriesInstanceUID, previous.SOPInstanceUID = earlier[-1]
    previous.SOPClassUID = COMPREHENSIVE_3D_SR
    return [previous]


def _build(row: WorklistRow, record: dict | None, guarantee: str,
           sent: Sequence[Sequence[str]]):
    from highdicom.sr import (
        AlgorithmIdentification,
        Comprehensive3DSR,
        DeviceObserverIdentifyingAttributes,
        Measurement,
        MeasurementReport,
        MeasurementsAndQualitativeEvaluations,
        ObservationContext,
        ObserverContext,
        QualitativeEvaluation,
        SourceImageForMeasurementGroup,
        TextContentItem,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    if row.study_uid.startswith("unreadable:"):
        raise ReportError("a file whose study could not be read has no study to report into")
    evidence = _evidence(record) if record else []
    if not evidence:
        raise ReportError("no instance of the study is known (its files could not be "
                          "fetched nor listed)")
    c = _codes()
    study_uid = row.study_uid.split("#")[0]
    fingerprint = hashlib.sha256("\n".join(sorted(e.SOPInstanceUID for e in evidence))
                                 .encode()).hexdigest()
    key = (study_uid, row.model_name, row.model_version, row.rules_version)
    algorithm = AlgorithmIdentification(
        name=row.model_name or "triage", version=row.model_version or "unknown",
        parameters=[f"rules {row.rules_version}", f"temperature {row.temperature}"])
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=derived_uid("device", row.model_name, row.model_version),
            name="triage", manufacturer_name=MANUFACTURER,
            model_name=(row.model_name or "triage")[:64]))
    classified = [e for e in evidence if e.SeriesInstanceUID == row.series_uid]
    measurements = []
    if row.p_calibrated:
        measurements.append(Measurement(name=c["p"], value=float(row.p_calibrated),
                                        unit=c["unitless"], algorithm_id=algorithm))
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=derived_uid("tracking", *key),
                                               identifier="triage result"),
        algorithm_id=algorithm, measurements=measurements or None,
        qualitative_evaluations=[QualitativeEvaluation(c["route"], route_code(row.route))],
        source_images=[SourceImageForMeasurementGroup(e.SOPClassUID, e.SOPInstanceUID)
                       for e in classified] or None)
    texts = [("reasons", row.reasons), ("rules", row.rule_ids), ("guarantee", guarantee)]
    if row.route == "failed":
        texts.append(("failure", row.reasons or "no reason was recorded"))
    content_group = group[0]
    for name, value in texts:
        if value:
            content_group.ContentSequence.append(
                TextContentItem(c[name], value[:1024], relationship_type="CONTAINS"))
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=c["procedure"], imaging_measurements=[group])
    sop_uid = derived_uid("sr", *key, fingerprint)
    return Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=derived_uid("series", *key),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=sop_uid, instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
        previous_versions=_predecessor(study_uid, sent, sop_uid) or None)


def read_sr(data) -> dict[str, Any]:
    """The triage result of an SR (a dataset or its bytes), parsed back with highdicom."""
    import io

    import highdicom as hd
    import pydicom

    ds = data if isinstance(data, pydicom.Dataset) else pydicom.dcmread(io.BytesIO(data))
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    groups = sr.content.get_image_measurement_groups()  # type: ignore[attr-defined]
    result: dict[str, Any] = {"study_uid": ds.StudyInstanceUID, "sop_uid": ds.SOPInstanceUID,
                              "series_uid": ds.SeriesInstanceUID}
    for item in _walk(ds.ContentSequence):
        name = item.ConceptNameCodeSequence[0].CodeValue
        scheme = item.ConceptNameCodeSequence[0].CodingSchemeDesignator
        if scheme != SCHEME:
            continue
        if item.ValueType == "CODE":
            result[name] = item.ConceptCodeSequence[0].CodeValue
        elif item.ValueType == "NUM":
            result[name] = float(item.MeasuredValueSequence[0].NumericValue)
        elif item.ValueType == "TEXT":
            result[name] = str(item.TextValue)
    result["groups"] = len(groups)
    result["predecessors"] = [ref.ReferencedSOPInstanceUID
                              for study in ds.get("PredecessorDocumentsSequence", [])
                              for series in study.ReferencedSeriesSequence
                              for ref in series.ReferencedSOPSequence]
    return result


def _walk(sequence):
    for item in sequence:
        yield item
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence)
