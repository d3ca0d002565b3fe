"""`IngestConfig`: series selection rules, loader tolerances and preprocessing, in one file.

The YAML (default: ``triage/configs/ingest/default.yaml``) has four sections, each optional:
``selection`` (`SelectionRules`), ``load`` (`LoadOptions`), ``limits`` (`ResourceLimits`:
caps on what one hostile file or study may cost, kept in ``LoadOptions.limits``) and
``preprocess`` (`PreprocessConfig`). Unknown sections and keys are rejected with a
suggestion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from triage.configs import config_path
from triage.dicom.limits import ResourceLimits
from triage.dicom.select.selection import SelectionRules
from triage.dicom.volume.loader import LoadOptions
from triage.errors import ConfigError
from triage.preprocess.config import PreprocessConfig
from triage.settings import check_keys, dataclass_from_mapping, load_yaml

DEFAULT_CONFIG = config_path("ingest")
SECTIONS = ["selection", "load", "limits", "preprocess"]


@dataclass(frozen=True)
class IngestConfig:
    """Everything that decides what ingest produces from an export."""

    selection: SelectionRules = field(default_factory=SelectionRules)
    load: LoadOptions = field(default_factory=LoadOptions)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    @property
    def limits(self) -> ResourceLimits:
        """The resource caps (the ``limits`` section; they live in ``load.limits``)."""
        return self.load.limits

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "the ingest config"
                  ) -> IngestConfig:
        data = data or {}
        check_keys(data, SECTIONS, "section", source)
        load_section = dict(data.get("load") or {})
        if "limits" in load_section:
            raise ConfigError(f"{source}: 'limits' is a section of its own, not a load "
                              "option; move it to the top level.")
        load = dataclass_from_mapping(LoadOptions, load_section, what="load option",
                                      source=source)
        limits = dataclass_from_mapping(ResourceLimits, data.get("limits"),
                                        what="limits option", source=source)
        return cls(
            selection=dataclass_from_mapping(SelectionRules, data.get("selection"),
                                             what="selection option", source=source),
            load=replace(load, limits=limits),
            preprocess=PreprocessConfig.from_dict(data.get("preprocess") or {}, source=source),
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON-ready sections (what `from_dict` reads back)."""
        import dataclasses
        import json

        load = dataclasses.asdict(self.load)
        data = {"selection": dataclasses.asdict(self.selection),
                "load": load, "limits": load.pop("limits"),
                "preprocess": self.preprocess.to_dict()}
        return json.loads(json.dumps(data))

    @classmethod
    def from_yaml(cls, path: Path | str | None = None) -> IngestConfig:
        """Load `path` (the shipped default when None).

        Raises:
            ConfigError: missing/unreadable file, invalid YAML, unknown key, bad value.
        """
        path = Path(path) if path is not None else DEFAULT_CONFIG
        return cls.from_dict(load_yaml(path, "ingest config"), source=str(path))
