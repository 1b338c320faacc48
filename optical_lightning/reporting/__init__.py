"""Results to tables, plots and dashboards: the end-of-run summary, W&B/CSV publishing, sweep
summaries and the study report."""
