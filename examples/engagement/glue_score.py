"""ScoreStage as a Glue job: the same scores as ``stages.score_stage``, computed with Spark.

Reads FilterStage's output (a JSON document of events), writes JSON Lines parts and a manifest
that StoreStage (a Lambda) reads. Runs unchanged on AWS Glue and, via ``ceap-stage run``, on
local Spark.
"""

from __future__ import annotations

from ceap_stage.glue import glue_job

_SCHEMA = (
    "event_id STRING, session_id STRING, customer_id STRING, channel STRING, "
    "event_type STRING, product_id STRING, occurred_at STRING, value_cents LONG, is_bot BOOLEAN"
)
#: What the job writes, one record per customer: ``ceap-stage check`` compares it with StoreStage's
#: input model (``list[CustomerScore]``).
OUTPUT_SCHEMA = (
    "customer_id STRING NOT NULL, events LONG NOT NULL, purchases LONG NOT NULL, "
    "revenue_cents LONG NOT NULL, score LONG NOT NULL"
)
# The weights of models.EVENT_WEIGHTS (kept literal: a Glue script ships as one file).
_WEIGHTS = {"view": 1, "click": 3, "share": 4, "add_to_cart": 5, "purchase": 20}


def main() -> None:
    """Aggregate events per customer: events, purchases, revenue and the weighted score."""
    from pyspark.sql import functions as F

    with glue_job() as job:
        events = job.read_input(schema=_SCHEMA)
        weight = F.lit(0)
        for kind, points in _WEIGHTS.items():
            weight = F.when(F.col("event_type") == kind, F.lit(points)).otherwise(weight)
        purchase = F.col("event_type") == "purchase"
        scores = events.groupBy("customer_id").agg(
            F.count(F.lit(1)).cast("long").alias("events"),
            F.sum(F.when(purchase, 1).otherwise(0)).cast("long").alias("purchases"),
            F.sum(F.when(purchase, F.col("value_cents")).otherwise(0))
            .cast("long")
            .alias("revenue_cents"),
            F.sum(weight).cast("long").alias("score"),
        )
        job.write_output(scores, order_by="customer_id")


if __name__ == "__main__":
    main()
