"""productlens driven by other tools: Dagster assets and asset checks from the model graph
(`dagster`). The orchestrators' packages are imported only by their modules."""
