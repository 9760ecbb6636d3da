"""Engagement enrichment: the heavy-ETL Glue step of the engagement pipeline.

Engagement events in (the cleaned ``EngagementEvent`` records FilterStage writes, in any of the
three ``output.json`` formats), one aggregate per customer out, as JSON Lines parts + a manifest
that the next Lambda stage reads with ``list[CustomerEngagement]``.

What it does, all in Spark:

1. drops duplicate deliveries (same ``event_id``) and bot traffic;
2. enriches each event with its points and its channel's weight (a broadcast join against a
   small dimension table);
3. aggregates per customer: events, sessions, purchases, revenue, weighted score, first and last
   activity, the channels used and the favourite one (a window over per-channel counts);
4. puts each customer in a tier and writes the result sorted by ``customer_id``.

On AWS Glue the job gets its arguments from Step Functions. Locally::

    CEAP_STORE=file:///tmp/ceap python examples/glue/engagement_enrichment.py \\
        --JOB_NAME engagement-enrichment --execution-id run-1 \\
        --input-bucket ceap-workflow-dev --input-key executions/run-1/FilterStage/output.json \\
        --output-bucket ceap-workflow-dev \\
        --output-key executions/run-1/EnrichStage/output.json \\
        --current-stage EnrichStage --previous-stage FilterStage
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from ceap_stage.glue import glue_job

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: The input schema: ``EngagementEvent`` (``examples/engagement/models.py``) as Spark sees it.
EVENT_SCHEMA = (
    "event_id STRING NOT NULL, session_id STRING, customer_id STRING NOT NULL, channel STRING, "
    "event_type STRING NOT NULL, product_id STRING, occurred_at TIMESTAMP, value_cents LONG, "
    "is_bot BOOLEAN"
)
#: Points per event type (the same table as ``EVENT_WEIGHTS`` of the engagement example).
EVENT_POINTS = {"view": 1, "click": 3, "share": 4, "add_to_cart": 5, "purchase": 20}
#: How much an interaction on each channel counts (a small dimension table, broadcast).
CHANNEL_WEIGHTS = {"web": 1.0, "ios": 1.2, "android": 1.2, "email": 0.8}
#: Score thresholds of the tiers, highest first.
TIERS = (("gold", 200), ("silver", 60), ("bronze", 0))


class CustomerEngagement(BaseModel):
    """One output record: what the next (Lambda) stage validates each line against."""

    customer_id: str
    events: int
    sessions: int
    purchases: int
    revenue_cents: int
    score: float
    first_seen: str | None
    last_seen: str | None
    channels: list[str]
    favourite_channel: str | None
    tier: str


def enrich(spark: SparkSession, events: DataFrame) -> DataFrame:
    """The transformation itself: cleaned events in, one row per customer out.

    Args:
        spark: The session (for the dimension tables).
        events: Events with :data:`EVENT_SCHEMA`.

    Returns:
        One row per customer with the fields of :class:`CustomerEngagement`.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    points = spark.createDataFrame(list(EVENT_POINTS.items()), "event_type STRING, points INT")
    channels = spark.createDataFrame(
        list(CHANNEL_WEIGHTS.items()), "channel STRING, channel_weight DOUBLE"
    )

    clean = (
        events.where(~F.coalesce(F.col("is_bot"), F.lit(False)))
        .dropDuplicates(["event_id"])
        .withColumn("channel", F.lower(F.col("channel")))
    )
    enriched = (
        clean.join(F.broadcast(points), "event_type", "left")
        .join(F.broadcast(channels), "channel", "left")
        .withColumn(
            "weighted",
            F.coalesce(F.col("points"), F.lit(0)) * F.coalesce(F.col("channel_weight"), F.lit(1.0)),
        )
    )

    purchase = F.col("event_type") == "purchase"
    per_customer = enriched.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("events"),
        F.countDistinct("session_id").alias("sessions"),
        F.sum(F.when(purchase, 1).otherwise(0)).alias("purchases"),
        F.sum(F.when(purchase, F.col("value_cents")).otherwise(0)).alias("revenue_cents"),
        F.round(F.sum("weighted"), 2).alias("score"),
        F.min("occurred_at").alias("first_seen"),
        F.max("occurred_at").alias("last_seen"),
        F.sort_array(F.collect_set("channel")).alias("channels"),
    )

    # The favourite channel: most events, ties broken by name.
    by_channel = enriched.where(F.col("channel").isNotNull()).groupBy("customer_id", "channel")
    ranked = by_channel.count().withColumn(
        "rank",
        F.row_number().over(
            Window.partitionBy("customer_id").orderBy(F.desc("count"), F.asc("channel"))
        ),
    )
    favourite = ranked.where(F.col("rank") == 1).select(
        "customer_id", F.col("channel").alias("favourite_channel")
    )

    tier = F.lit(TIERS[-1][0])
    for name, threshold in reversed(TIERS[:-1]):
        tier = F.when(F.col("score") >= threshold, F.lit(name)).otherwise(tier)
    # Timestamps are instants; show them as UTC whatever the session's time zone is.
    zone = spark.conf.get("spark.sql.session.timeZone") or "UTC"
    iso = "yyyy-MM-dd'T'HH:mm:ss'Z'"
    return per_customer.join(favourite, "customer_id", "left").select(
        "customer_id",
        F.col("events").cast("long"),
        F.col("sessions").cast("long"),
        F.col("purchases").cast("long"),
        F.coalesce(F.col("revenue_cents"), F.lit(0)).cast("long").alias("revenue_cents"),
        F.col("score").cast("double"),
        F.date_format(F.to_utc_timestamp("first_seen", zone), iso).alias("first_seen"),
        F.date_format(F.to_utc_timestamp("last_seen", zone), iso).alias("last_seen"),
        "channels",
        "favourite_channel",
        tier.alias("tier"),
    )


def main() -> None:
    """Run the Glue job: read the events, enrich and aggregate, write parts + manifest."""
    with glue_job() as job:
        events = job.read_input(schema=EVENT_SCHEMA)
        job.write_output(enrich(job.spark, events), order_by="customer_id")


if __name__ == "__main__":
    main()
