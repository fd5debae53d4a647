"""DICOM: the Storage SCP (``scp``, one module per DIMSE service: ``echo``, ``store``) and an SCU (``scu``)."""
