"""The Glue (PySpark) side of the stage contract (docs/contract.md section 3).

A Glue stage reads the previous stage's ``output.json`` in any of the three formats and writes
JSON Lines parts plus a manifest that the next Lambda stage reads::

    from ceap_stage.glue import glue_job

    with glue_job() as job:                       # arguments, Spark, logs, Job.commit
        events = job.read_input(schema="customer_id STRING, kind STRING")
        job.write_output(events.groupBy("customer_id").count(), order_by="customer_id")

Importing this package does not import PySpark (a Python-shell job has none); the Spark functions
import it when called. Without ``awsglue`` (a laptop, CI) everything works the same on a plain
``SparkSession``; with ``CEAP_STORE=file:///dir`` every ``s3://`` path resolves inside that local
store.
"""

from ._args import GlueArgs, resolve_args
from ._job import GlueJob, glue_job, glue_stage
from ._output import GlueOutput, default_store, new_attempt_id, spark_path
from ._shell import read_input_value, read_records, write_records
from ._spark import read_input, write_output

__all__ = [
    "GlueArgs",
    "GlueJob",
    "GlueOutput",
    "default_store",
    "glue_job",
    "glue_stage",
    "new_attempt_id",
    "read_input",
    "read_input_value",
    "read_records",
    "resolve_args",
    "spark_path",
    "write_output",
    "write_records",
]
