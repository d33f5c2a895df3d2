"""productlens driven by other tools: a daily run in stages (`stages`), the Airflow DAG
factory (`airflow`), Dagster assets and asset checks (`dagster`) and the dbt export (`dbt`),
all from the model graph. The orchestrators' packages are imported only by their modules."""
