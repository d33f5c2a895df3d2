"""productlens driven by other tools: a daily run in stages (`stages`), the Airflow DAG
factory (`airflow`). The orchestrators' packages are imported only by their modules."""
