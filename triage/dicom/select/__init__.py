"""Series selection: the one series of a study to classify (`selection.select_series`),
each series checked against `selection_rules.SelectionRules` (`series_check`)."""
