"""A run's results to tables, plots and dashboards: the end-of-run summary, W&B/CSV publishing, the
run's plan heatmaps and learning curves (sweep summaries and the study report: ``optical_lightning_study``)."""
