"""Sources of dose data: DICOM (:mod:`agent.sources.dicom`) and serial lines."""
