"""A funder's pooled portfolio on one machine: columnar ingest, SQL scoring, growth fit.

* :func:`~trackii_eval.portfolio.generate.write_portfolio` writes a simulated portfolio
  study (vectorised; 100,000 participants x 8 waves x 40 items in about 15 s of CPU).
* :func:`~trackii_eval.ingest.bulk.ingest_bulk` ingests plain CSV wave files through DuckDB
  with the same store contents and problem lines as :func:`~trackii_eval.ingest.core.ingest_study`.
* :func:`~trackii_eval.portfolio.score.score_sql` scores in DuckDB SQL, the same numbers as
  :func:`~trackii_eval.scoring.scores.score_responses`.
"""
