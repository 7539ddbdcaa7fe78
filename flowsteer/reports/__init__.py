"""From run directories to tables, plots and statistics. Imports none of the training code.

- load: run directories -> one tidy table (Parquet cache, dedupe, provenance); mlflow_source: the same from MLflow
- aggregate: the FQL/OGBench rules (last-k per run, per-task and per-seed category mean ± std, bold, flags)
- tables: a Report (layout task | category | published, caption from the protocol); published: the papers' numbers
- writers: CSV (unrounded), Markdown, LaTeX (booktabs); stats: IQM, bootstrap CIs, profiles; plots: learning curves
- api.write_report: all of it in one call (``flowsteer report``, the end of a sweep)
"""
