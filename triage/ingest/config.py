"""`IngestConfig`: series selection rules, loader tolerances and preprocessing, in one file.

The YAML (default: ``triage/configs/ingest/default.yaml``) has three sections, each optional:
``selection`` (`SelectionRules`), ``load`` (`LoadOptions`), ``preprocess``
(`PreprocessConfig`). Unknown sections and keys are rejected with a suggestion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.configs import config_path
from triage.dicom.loader import LoadOptions
from triage.dicom.selection import SelectionRules
from triage.preprocess.config import PreprocessConfig
from triage.settings import check_keys, dataclass_from_mapping, load_yaml

DEFAULT_CONFIG = config_path("ingest")
SECTIONS = ["selection", "load", "preprocess"]


@dataclass(frozen=True)
class IngestConfig:
    """Everything that decides what ingest produces from an export."""

    selection: SelectionRules = field(default_factory=SelectionRules)
    load: LoadOptions = field(default_factory=LoadOptions)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "the ingest config"
                  ) -> IngestConfig:
        data = data or {}
        check_keys(data, SECTIONS, "section", source)
        return cls(
            selection=dataclass_from_mapping(SelectionRules, data.get("selection"),
                                             what="selection option", source=source),
            load=dataclass_from_mapping(LoadOptions, data.get("load"),
                                        what="load option", source=source),
            preprocess=PreprocessConfig.from_dict(data.get("preprocess") or {}, source=source),
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON-ready sections (what `from_dict` reads back)."""
        import dataclasses
        import json

        data = {"selection": dataclasses.asdict(self.selection),
                "load": dataclasses.asdict(self.load),
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
